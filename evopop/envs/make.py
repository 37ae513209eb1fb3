"""Build single and vectorised environments from config-level names.

Everything a run config says about environments (id, wrappers, kwargs, extra packages that
register ids, how to vectorise) becomes Gymnasium objects here, and every way that can go wrong
becomes a one-line `EnvError` the user can act on.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial
from types import MappingProxyType
from typing import Any

import gymnasium as gym
from gymnasium.error import DependencyNotInstalled
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from evopop.envs.novel import NOVEL_IDS, register_novel_envs
from evopop.errors import UserError
from evopop.wrappers import WrapperSpec, parse_wrappers

WrapperLike = WrapperSpec | str | Mapping[str, Any]


class EnvError(UserError):
    """A user-facing environment problem: unknown id, missing package or bad arguments."""


class Vectorization(str, Enum):
    """How env copies are stepped: all in this process, one worker process each in lockstep,
    or split over worker processes that collect whole rollouts without waiting for each other
    (`evopop.agents.independent`)."""

    SYNC = "sync"
    ASYNC = "async"
    INDEPENDENT = "independent"

    def lockstep(self) -> Vectorization:
        """The lockstep mode for code that steps all copies together (evaluation)."""
        return Vectorization.ASYNC if self is Vectorization.INDEPENDENT else self


class EnvWorkerBackend(str, Enum):
    """Where independent stepping runs its env workers: local processes or Ray actors."""

    PROCESSES = "processes"
    RAY = "ray"


# Async workers are spawned, never forked: a fork copies whatever lock another thread of the
# learner (torch's autograd workers, tqdm's monitor) holds at that moment, and a satellite eval
# env forked after training hung for good that way.
# SAME_STEP: a done step returns the reset observation and puts the final one in
# infos["final_obs"]. Gymnasium's default NEXT_STEP would instead emit one junk transition
# (reward 0, action ignored) after every done, which must never reach the rollout buffer.
_VECTOR_BUILDERS: Mapping[Vectorization, Callable[[list[Callable[[], gym.Env]]], VectorEnv]] = (
    MappingProxyType(
        {
            Vectorization.SYNC: partial(SyncVectorEnv, autoreset_mode=AutoresetMode.SAME_STEP),
            Vectorization.ASYNC: partial(
                AsyncVectorEnv, autoreset_mode=AutoresetMode.SAME_STEP, context="spawn"
            ),
        }
    )
)


def parse_vectorization(value: Vectorization | str) -> Vectorization:
    """Accept the enum or its config string."""
    try:
        return Vectorization(value)
    except ValueError:
        valid = ", ".join(mode.value for mode in Vectorization)
        raise EnvError(f"unknown vectorization {value!r} (valid: {valid})") from None


def _wrapper_specs(wrappers: Iterable[WrapperLike] | None) -> tuple[WrapperSpec, ...]:
    """Parse config-style wrappers, reporting mistakes as `EnvError`."""
    try:
        return parse_wrappers(wrappers)
    except ValueError as error:
        raise EnvError(str(error)) from None


def _import_env_packages(packages: Iterable[str]) -> None:
    """Import packages whose import registers extra env ids."""
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError as error:
            missing = error.name is not None and (
                name == error.name or name.startswith(f"{error.name}.")
            )
            if missing:
                raise EnvError(f"env package {name!r} is not installed") from None
            raise EnvError(f"env package {name!r} failed to import: {error}") from error


def _check_registered(env_id: str) -> None:
    """Fail with the closest registered ids instead of Gymnasium's generic lookup error."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise EnvError(f"unknown env id {env_id!r}{hint}")


def _apply_wrappers(env: gym.Env, specs: Sequence[WrapperSpec]) -> gym.Env:
    """Apply wrappers in order, closing the env if one of them rejects it."""
    try:
        for spec in specs:
            env = spec.apply(env)
    except (TypeError, ValueError) as error:
        env.close()
        raise EnvError(f"cannot apply wrapper: {error}") from error
    return env


def make_env(
    env_id: str,
    wrappers: Iterable[WrapperLike] | None = (),
    env_kwargs: Mapping[str, Any] | None = None,
    env_packages: Iterable[str] = (),
    render_mode: str | None = None,
) -> gym.Env:
    """Make one env: import id-registering packages, `gym.make` the id, apply the wrappers.

    `env_id` may use Gymnasium's "module:Env-v0" form; the module is imported like an
    `env_packages` entry. `env_kwargs` may include `max_episode_steps` to override the limit.
    """
    specs = _wrapper_specs(wrappers)
    module, _, name = env_id.rpartition(":")
    _import_env_packages([*env_packages, module] if module else env_packages)
    register_novel_envs()
    _check_registered(name)
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(name, **kwargs)
    except TypeError as error:
        raise EnvError(f"bad env_kwargs for {name!r}: {error}") from error
    except DependencyNotInstalled as error:
        raise EnvError(f"cannot make {name!r}: {error}") from error
    return _apply_wrappers(env, specs)


@dataclass(frozen=True)
class EnvFactory:
    """Picklable zero-argument constructor, so worker processes can rebuild the env."""

    env_id: str
    wrappers: tuple[WrapperSpec, ...]
    env_kwargs: Mapping[str, Any]
    env_packages: tuple[str, ...]

    def __call__(self) -> gym.Env:
        """Make one copy of the env."""
        return make_env(self.env_id, self.wrappers, self.env_kwargs, self.env_packages)


def env_factory(
    env_id: str,
    wrappers: Iterable[WrapperLike] | None = (),
    env_kwargs: Mapping[str, Any] | None = None,
    env_packages: Iterable[str] = (),
) -> EnvFactory:
    """A picklable constructor for worker processes, checked by building (and closing) one env
    here, so mistakes surface as an `EnvError` in this process rather than inside a worker."""
    factory = EnvFactory(
        env_id, _wrapper_specs(wrappers), dict(env_kwargs or {}), tuple(env_packages)
    )
    factory().close()
    return factory


def make_vec_env(
    env_id: str,
    num_envs: int,
    vectorization: Vectorization | str = Vectorization.SYNC,
    wrappers: Iterable[WrapperLike] | None = (),
    seed: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    env_packages: Iterable[str] = (),
) -> VectorEnv:
    """Make `num_envs` copies of an env, vectorised with SAME_STEP autoreset.

    `independent` stepping collects whole rollouts and is built by
    `evopop.agents.independent.make_rollout_envs`; asked for here, it steps in lockstep (async).

    With a `seed`, the batched spaces are seeded and the envs are reset once with it (copy i
    gets seed + i), so later unseeded resets continue deterministic streams.
    """
    mode = parse_vectorization(vectorization)
    if num_envs < 1:
        raise EnvError(f"num_envs must be >= 1, got {num_envs}")
    factory = env_factory(env_id, wrappers, env_kwargs, env_packages)
    envs = _VECTOR_BUILDERS[mode.lockstep()]([factory] * num_envs)
    if seed is not None:
        envs.action_space.seed(seed)
        envs.observation_space.seed(seed)
        envs.reset(seed=seed)
    return envs


def env_ids() -> list[str]:
    """The ids evopop registers (for listing on the command line): the NoVel ids, plus the
    spacecraft ids (namespace `evopop/`) where their optional packages are installed."""
    register_novel_envs()
    return [*NOVEL_IDS, *sorted(i for i in gym.registry if i.startswith("evopop/"))]
