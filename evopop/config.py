"""Run configuration: YAML in, one validated object out, every mistake a one-line `ConfigError`.

Validation happens once, up front, with pydantic (never with `assert`, which `python -O` strips).
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evopop.agents.spec import NetSpec, PPOParams
from evopop.envs.spec import EnvSpec, Vectorization
from evopop.errors import UserError
from evopop.evolution.settings import EvolutionConfig, MutationSettings
from evopop.execution.cluster import RaySettings
from evopop.execution.placement import Placement

__all__ = ["ConfigError", "EvolutionConfig", "MutationSettings", "RunConfig", "load_config",
           "parse_config"]


class ConfigError(UserError):
    """A config problem the user can fix; the message names the key and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunConfig(_Strict):
    """A training run: env, network, PPO hyperparameters, budget and optional evolution."""

    env: EnvSpec = Field(description="the environment and its vectorisation")
    net: NetSpec = Field(default_factory=NetSpec, description="the network architecture")
    ppo: PPOParams = Field(default_factory=PPOParams, description="PPO hyperparameters")
    max_steps: int = Field(100_000, ge=1, description="env steps per agent (per member)")
    eval_episodes: int = Field(10, ge=1, description="deterministic episodes of the final eval")
    seed: int = Field(0, ge=0, description="the one seed every random stream derives from")
    evolution: EvolutionConfig | None = Field(
        None, description="the population; absent for single-agent training")
    backend: Placement = Field(Placement.PROCESSES,
                                 description="where members train: local, processes or ray")
    workers: int | None = Field(
        None, ge=1, description="members training at once (default: cores; ray: what fits)")
    ray: RaySettings = Field(default_factory=lambda: RaySettings(),
                           description="the Ray cluster and what each member reserves on it")

    @model_validator(mode="after")
    def _ray_env_workers_have_a_cluster(self) -> RunConfig:
        if (self.env.env_worker_backend is Placement.RAY
                and self.backend is not Placement.RAY and self.ray.address is None):
            raise ValueError("env.env_worker_backend: ray needs backend: ray or a ray.address "
                             "(else every member process would start its own Ray)")
        return self

    def ray_env_worker_cpus(self) -> float:
        """CPUs a member's env workers reserve on Ray (0 unless they run there)."""
        env = self.env
        if env.vectorization is not Vectorization.INDEPENDENT or \
                env.env_worker_backend is not Placement.RAY:
            return 0.0
        return (env.env_workers or 1) * self.ray.num_cpus_per_env_worker

    @model_validator(mode="after")
    def _batch_fits_rollout(self) -> RunConfig:
        rollout = self.ppo.learn_step * self.env.num_envs
        if self.ppo.batch_size > rollout:
            raise ValueError(
                f"ppo.batch_size ({self.ppo.batch_size}) is larger than a rollout "
                f"(ppo.learn_step x env.num_envs = {rollout})"
            )
        return self


def _closest(word: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(candidates)}"


def _fields(node: Any) -> dict[str, Any]:
    """Fields of a model or dataclass, looking through `X | None`."""
    for candidate in (node, *typing.get_args(node)):
        fields = getattr(candidate, "model_fields", None) or getattr(
            candidate, "__dataclass_fields__", None)
        if fields:
            return fields
    return {}


def _valid_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) section a bad key was found in."""
    node: Any = model
    for part in path:
        field = _fields(node).get(part)
        node = getattr(field, "annotation", None) or getattr(field, "type", None)
    return list(_fields(node))


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc)
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        valid = _valid_keys(RunConfig, loc[:-1])
        return f"unknown config key '{where}'" + _closest(str(loc[-1]), valid)
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_config(data: dict[str, Any]) -> RunConfig:
    """Validates a config mapping; raises `ConfigError` describing the first problem."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err.errors()[0])) from None


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Applies one `--set a.b=value` override to a raw config mapping."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' is not a section")
    node[leaf] = value


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Reads a YAML config, applies dotted overrides, validates."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8) YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {path}{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    for key, value in (overrides or {}).items():
        set_key(data, key, value)
    return parse_config(data)


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what a run directory records)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
