"""Run configuration: YAML in, one validated object out, every mistake a one-line `ConfigError`.

Validation happens once, up front, with pydantic (never with `assert`, which `python -O` strips).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evopop.agents.spec import NetSpec, PPOParams
from evopop.envs import Vectorization
from evopop.errors import UserError


class ConfigError(UserError):
    """A config problem the user can fix; the message names the key and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvConfig(_Strict):
    """Which environment to train on and how to vectorise it."""

    id: str
    num_envs: int = Field(8, ge=1, description="env copies stepped together per agent")
    vectorization: Vectorization = Field(Vectorization.SYNC, description="sync | async")
    wrappers: list[str | dict[str, dict[str, Any]]] = Field(
        default_factory=list,
        description="POMDP wrappers, e.g. [mask_velocity, {noisy: {sigma: 0.1}}]",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to gym.make")
    packages: list[str] = Field(default_factory=list, description="imported to register more ids")


class RunConfig(_Strict):
    """A training run: env, network, PPO hyperparameters and budget."""

    env: EnvConfig
    net: NetSpec = Field(default_factory=NetSpec)
    ppo: PPOParams = Field(default_factory=PPOParams)
    total_steps: int = Field(100_000, ge=1, description="env steps per agent")
    eval_episodes: int = Field(10, ge=1, description="deterministic episodes per evaluation")
    seed: int = Field(0, ge=0)

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


def _valid_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) section a bad key was found in."""
    node: Any = model
    for part in path:
        fields = getattr(node, "model_fields", None) or getattr(node, "__dataclass_fields__", {})
        field = fields.get(part)
        node = getattr(field, "annotation", None) or getattr(field, "type", None)
    fields = getattr(node, "model_fields", None) or getattr(node, "__dataclass_fields__", {})
    return list(fields)


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
