"""Build single and vectorised environments from config-level names.

Everything a run config says about environments (id, wrappers, kwargs, extra packages that
register ids, how to vectorise) becomes Gymnasium objects here, and every way that can go wrong
becomes a one-line `EnvError` the user can act on.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import Any

import gymnasium as gym
from gymnasium.error import DependencyNotInstalled
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from evopop.envs.fast import FastVectorEnv
from evopop.envs.novel import NOVEL_IDS, register_novel_envs
from evopop.envs.spec import EnvSpec, Vectorization, as_spec
from evopop.errors import UserError
from evopop.wrappers import WrapperSpec, parse_wrappers


class EnvError(UserError):
    """A user-facing environment problem: unknown id, missing package or bad arguments."""


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


def _wrapper_specs(wrappers: Iterable[str | Mapping[str, Any]]) -> tuple[WrapperSpec, ...]:
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


def make_env(env: EnvSpec | str, render_mode: str | None = None) -> gym.Env:
    """Make one env: import id-registering packages, `gym.make` the id, apply the wrappers.

    The id may use Gymnasium's "module:Env-v0" form; the module is imported like a `packages`
    entry. `kwargs` may include `max_episode_steps` to override the limit.
    """
    spec = as_spec(env)
    wrappers = _wrapper_specs(spec.wrappers)
    module, _, name = spec.id.rpartition(":")
    _import_env_packages([*spec.packages, module] if module else spec.packages)
    register_novel_envs()
    _check_registered(name)
    kwargs = dict(spec.kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        made = gym.make(name, **kwargs)
    except TypeError as error:
        raise EnvError(f"bad env.kwargs for {name!r}: {error}") from error
    except DependencyNotInstalled as error:
        raise EnvError(f"cannot make {name!r}: {error}") from error
    return _apply_wrappers(made, wrappers)


def env_factory(env: EnvSpec | str) -> Callable[[], gym.Env]:
    """A picklable zero-argument constructor that worker processes rebuild copies with,
    checked by building (and closing) one env here, so mistakes surface as an `EnvError` in this
    process rather than inside a worker."""
    spec = as_spec(env)
    make_env(spec).close()
    return partial(make_env, spec)


def make_vec_env(
    env: EnvSpec | str, num_envs: int | None = None, seed: int | None = None
) -> VectorEnv:
    """Make `num_envs` (default: the spec's) copies, vectorised with SAME_STEP autoreset.

    `independent` stepping collects whole rollouts and is built by `evopop.rollouts`; asked
    for here, it steps in lockstep (async).

    With a `seed`, the batched spaces are seeded and the envs are reset once with it (copy i
    gets seed + i), so later unseeded resets continue deterministic streams.
    """
    spec = as_spec(env)
    count = spec.num_envs if num_envs is None else num_envs
    if count < 1:
        raise EnvError(f"num_envs must be >= 1, got {count}")
    return seeded(_build(spec, count), seed)


def seeded(envs: VectorEnv, seed: int | None) -> VectorEnv:
    """With a `seed`, the batched spaces are seeded and the envs reset once with it."""
    if seed is not None:
        envs.action_space.seed(seed)
        envs.observation_space.seed(seed)
        envs.reset(seed=seed)
    return envs


def _build(spec: EnvSpec, count: int) -> VectorEnv:
    mode = spec.vectorization.lockstep()
    if mode is not Vectorization.FAST:
        return _VECTOR_BUILDERS[mode]([env_factory(spec)] * count)
    _wrapper_specs(spec.wrappers)  # the spec has checked that envpool covers the env
    try:
        return FastVectorEnv(spec, count)
    except ValueError as error:  # a wrapper that does not fit the env (e.g. mask indices)
        raise EnvError(f"cannot apply wrapper: {error}") from error


def env_ids() -> list[str]:
    """The ids evopop registers (for listing on the command line): the NoVel ids, then the
    `evopop/` namespace: the memory tasks, and the spacecraft ids where their optional packages
    are installed."""
    register_novel_envs()
    return [*NOVEL_IDS, *sorted(i for i in gym.registry if i.startswith("evopop/"))]
