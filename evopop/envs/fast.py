"""Classic-control envs stepped as one C++ batch (envpool), with evopop's POMDP wrappers applied
to the whole batch, behind Gymnasium's `VectorEnv` interface in SAME_STEP autoreset mode.

Gymnasium steps each copy in a Python loop: for W1 (16 Pendulums) that is a fifth of a member's
learning cycle. envpool runs the same dynamics in C++ (checked against Gymnasium's step for step
in tests/test_fast_envs.py); only the random streams of resets differ, so `fast` is its own
vectorization mode, resolved once per run (see `EnvSpec`) and never swapped silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from evopop.envs.coverage import base_id
from evopop.envs.spec import EnvSpec
from evopop.wrappers import WrapperKind, WrapperSpec, parse_wrappers
from evopop.wrappers.pomdp import FLICKER_SEED_TAG, NOISY_SEED_TAG, velocity_indices

ObsTransform = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Applies one wrapper to the observations of the env copies `rows` (a batch in, a batch out)."""


class _Seeded:
    """One numpy generator per copy, keyed like the per-env wrappers' (`seed + i`, tag), so a
    batch draws exactly what `NoisyObservation`/`FlickerObservation` copies would."""

    def __init__(self, count: int, tag: int) -> None:
        self.tag = tag
        self.rngs = [np.random.default_rng() for _ in range(count)]

    def reseed(self, seeds: Sequence[int]) -> None:
        self.rngs = [np.random.default_rng(np.random.SeedSequence([s, self.tag])) for s in seeds]


class _Mask:
    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = np.asarray(indices, dtype=np.intp)

    def __call__(self, obs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        masked = obs.copy()
        masked[:, self.indices] = 0
        return masked


class _Noise(_Seeded):
    def __init__(self, count: int, sigma: float) -> None:
        super().__init__(count, NOISY_SEED_TAG)
        self.sigma = float(sigma)

    def __call__(self, obs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        noise = np.stack([self.rngs[i].normal(0.0, self.sigma, size=obs.shape[1:]) for i in rows])
        return (obs + noise).astype(obs.dtype, copy=False)


class _Flicker(_Seeded):
    def __init__(self, count: int, p: float) -> None:
        super().__init__(count, FLICKER_SEED_TAG)
        self.p = float(p)

    def __call__(self, obs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        dropped = np.array([self.rngs[i].random() < self.p for i in rows], dtype=bool)
        out = obs.copy()
        out[dropped] = 0
        return out


def _transform(wrapper: WrapperSpec, base: str, size: int, count: int) -> ObsTransform:
    if wrapper.kind is WrapperKind.MASK_VELOCITY:
        return _Mask(velocity_indices(base, wrapper.kwargs.get("indices"), size))
    if wrapper.kind is WrapperKind.NOISY:
        return _Noise(count, wrapper.kwargs["sigma"])
    if wrapper.kind is WrapperKind.FLICKER:
        return _Flicker(count, wrapper.kwargs["p"])
    raise ValueError(f"envpool's batch does not apply {wrapper.kind.value}")  # coverage refuses it


def _observation_space(space: spaces.Box, wrappers: Sequence[WrapperSpec]) -> spaces.Box:
    """What the per-env wrappers would report: noise leaves every finite box."""
    if any(w.kind is WrapperKind.NOISY for w in wrappers):
        return spaces.Box(-np.inf, np.inf, space.shape, space.dtype)
    return space


@contextmanager
def _quiet_boxes() -> Iterator[None]:
    """envpool builds its float32 boxes from float64 bounds, which Gymnasium warns about."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered by casting")
        yield


class FastVectorEnv(VectorEnv):
    """`num_envs` copies of `spec` in one envpool batch (one thread: a worker owns one core);
    `evopop.envs.make_vec_env` checks first that envpool covers the spec."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, spec: EnvSpec, num_envs: int) -> None:
        self.base_id, novel = base_id(spec.id)
        self.env_spec, self.num_envs = spec, num_envs
        self._max_steps = spec.kwargs.get("max_episode_steps")
        self._pool = self._make_pool(list(range(num_envs)))
        wrappers = parse_wrappers(spec.wrappers)
        if novel:
            wrappers = (WrapperSpec(WrapperKind.MASK_VELOCITY), *wrappers)
        with _quiet_boxes():
            box, action_space = self._pool.observation_space, self._pool.action_space
        self._transforms = [_transform(w, self.base_id, box.shape[0], num_envs)
                            for w in wrappers]
        self.single_observation_space = _observation_space(box, wrappers)
        self.single_action_space = action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._all = np.arange(num_envs)

    def _make_pool(self, seeds: list[int]) -> Any:
        import importlib

        importlib.import_module("evopop.envs.envpool_import")  # first: the lighter import
        import envpool

        options: dict[str, Any] = {"num_envs": self.num_envs, "num_threads": 1,
                                   "env_seed": seeds}
        if self._max_steps is not None:
            options["max_episode_steps"] = int(self._max_steps)
        with _quiet_boxes():
            return envpool.make_gymnasium(self.base_id, **options)

    def _observe(self, obs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        for transform in self._transforms:
            obs = transform(obs, rows)
        return obs

    def reset(self, *, seed: int | Sequence[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """A seed rebuilds the batch with copy i seeded `seed + i` (as Gymnasium's vector envs
        seed their copies); without one, every copy starts a new episode of its stream. A batch
        is seeded only when it is built, so resetting some copies with seeds of their own
        (`options["reset_mask"]`, as evaluation does) is refused: evaluate on
        `EnvSpec.for_evaluation()`, Gymnasium's envs with the same dynamics."""
        if options and "reset_mask" in options:
            raise ValueError("envpool's batch cannot reset single copies with seeds of their "
                             "own; evaluate on EnvSpec.for_evaluation() (Gymnasium's envs)")
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) \
                else [int(s) for s in seed]
            self._pool.close()
            self._pool = self._make_pool(seeds)
            for transform in self._transforms:
                if isinstance(transform, _Seeded):
                    transform.reseed(seeds)
        with _quiet_boxes():
            obs, _ = self._pool.reset()
        return self._observe(obs, self._all), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        """One step of every copy; copies that end an episode are reset at once and their last
        observation goes to `infos["final_obs"]` (SAME_STEP)."""
        actions = np.asarray(actions, dtype=self.single_action_space.dtype)
        obs, rewards, terminated, truncated, _ = self._pool.step(actions)
        obs = self._observe(obs, self._all)
        infos: dict[str, Any] = {}
        ended = terminated | truncated
        done = np.flatnonzero(ended)
        if done.size:
            final = np.empty(self.num_envs, dtype=object)  # Gymnasium's layout of final_obs
            for i in done:
                final[i] = obs[i].copy()
            infos = {"final_obs": final, "_final_obs": ended, "final_info": {}}
            with _quiet_boxes():
                restarted, _ = self._pool.reset(done.astype(np.int32))
            obs[done] = self._observe(restarted, done)
        return (obs, np.asarray(rewards, np.float64), np.asarray(terminated, bool),
                np.asarray(truncated, bool), infos)

    def close_extras(self, **kwargs: Any) -> None:
        self._pool.close()
