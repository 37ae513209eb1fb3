"""Observation wrappers that turn fully observed control tasks into POMDPs.

Recurrent agents only earn their keep when the observation hides part of the state. These
wrappers hide it in three standard ways (drop velocities, add noise, drop whole frames) and
compose freely; a fourth, `PrevActionReward`, adds the standard memory-task input (the previous
action and reward) after them. `parse_wrappers` turns config-file entries into `WrapperSpec`s.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

_VELOCITY_INDICES: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "CartPole-v1": (1, 3),
        "Pendulum-v1": (2,),
        "MountainCar-v0": (1,),
        "MountainCarContinuous-v0": (1,),
        "Acrobot-v1": (4, 5),
        "LunarLander-v3": (2, 3, 5),
        "LunarLanderContinuous-v3": (2, 3, 5),
    }
)
# "CartPoleNoVel-v1" is looked up as "CartPole-v1": gym.make overwrites the innermost spec id.
_NOVEL_INFIX = re.compile(r"NoVel(?=-v\d+$)")


def _require_box(env: gym.Env, wrapper: str) -> spaces.Box:
    """Reject non-Box spaces early: masking and noise are only defined for real vectors."""
    space = env.observation_space
    if not isinstance(space, spaces.Box):
        raise ValueError(f"{wrapper} needs a Box observation space, got {type(space).__name__}")
    return space


def _base_env_id(env: gym.Env) -> str | None:
    """The id the innermost env was made with, with any NoVel infix removed."""
    spec = env.unwrapped.spec
    return None if spec is None else _NOVEL_INFIX.sub("", spec.id)


def velocity_indices(env_id: str | None, indices: Sequence[int] | None,
                     size: int) -> tuple[int, ...]:
    """Explicit indices win; otherwise use the built-in table for well-known (base) ids."""
    if indices is None:
        if env_id not in _VELOCITY_INDICES:
            raise ValueError(
                f"MaskVelocity has no built-in velocity indices for env {env_id!r}; "
                "pass indices=[...] explicitly"
            )
        indices = _VELOCITY_INDICES[env_id]
    resolved = tuple(int(i) for i in indices)
    bad = [i for i in resolved if not 0 <= i < size]
    if bad:
        raise ValueError(f"MaskVelocity indices {bad} out of range for observations of size {size}")
    return resolved


class MaskVelocity(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Zero the velocity entries so the agent has to infer them from the observation history."""

    def __init__(self, env: gym.Env, indices: Sequence[int] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, indices=indices)
        gym.ObservationWrapper.__init__(self, env)
        box = _require_box(env, "MaskVelocity")
        if len(box.shape) != 1:
            raise ValueError(f"MaskVelocity needs 1-D observations, got shape {box.shape}")
        self.indices: tuple[int, ...] = velocity_indices(_base_env_id(env), indices,
                                                          box.shape[0])
        self._index_array = np.asarray(self.indices, dtype=np.intp)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """Copy before masking: some envs hand out views of their internal state."""
        masked = np.array(observation, copy=True)
        masked[self._index_array] = 0
        return masked


NOISY_SEED_TAG = 1_001
FLICKER_SEED_TAG = 1_002
"""Keys of the wrappers' own random streams (with the reset seed): vectorized forms reuse them."""


class _SeededObservationWrapper(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Owns a generator derived from the reset seed, never from the env's own `np_random`.

    Drawing from the env's stream would change its dynamics; a separate stream keyed by
    (seed, tag) keeps the env identical with and without the wrapper, and keeps stacked
    wrappers of different kinds independent.
    """

    _SEED_TAG: ClassVar[int]

    def __init__(self, env: gym.Env, **kwargs: Any) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, **kwargs)
        gym.ObservationWrapper.__init__(self, env)
        self.rng = np.random.default_rng()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Re-derive the generator on seeded resets so equal seeds give equal observations."""
        if seed is not None:
            self.rng = np.random.default_rng(np.random.SeedSequence([seed, self._SEED_TAG]))
        return super().reset(seed=seed, options=options)


class NoisyObservation(_SeededObservationWrapper):
    """Add i.i.d. Gaussian noise N(0, sigma²) to every observation component."""

    _SEED_TAG: ClassVar[int] = NOISY_SEED_TAG

    def __init__(self, env: gym.Env, sigma: float) -> None:
        if not sigma >= 0:
            raise ValueError(f"NoisyObservation sigma must be >= 0, got {sigma}")
        super().__init__(env, sigma=sigma)
        box = _require_box(env, "NoisyObservation")
        if not np.issubdtype(box.dtype, np.floating):
            raise ValueError(f"NoisyObservation needs a float observation dtype, got {box.dtype}")
        self.sigma = float(sigma)
        # Noise can leave any finite box, so the honest space is unbounded.
        self.observation_space = spaces.Box(-np.inf, np.inf, box.shape, box.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """Return a noisy copy in the original dtype."""
        noise = self.rng.normal(0.0, self.sigma, size=np.shape(observation))
        return (observation + noise).astype(self.observation_space.dtype, copy=False)


class FlickerObservation(_SeededObservationWrapper):
    """With probability p replace the whole observation by zeros (a dropped frame)."""

    _SEED_TAG: ClassVar[int] = FLICKER_SEED_TAG

    def __init__(self, env: gym.Env, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"FlickerObservation p must be in [0, 1], got {p}")
        super().__init__(env, p=p)
        _require_box(env, "FlickerObservation")
        self.p = float(p)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """One uniform draw per step decides whether this frame is dropped."""
        if self.rng.random() < self.p:
            return np.zeros_like(observation)
        return observation


def _flat_box(space: spaces.Space, role: str) -> spaces.Box:
    """The Box that `spaces.flatten` maps `space` into (one-hots for categorical parts)."""
    if not space.is_np_flattenable:
        raise ValueError(f"PrevActionReward cannot flatten the {role} space {space}")
    return spaces.flatten_space(space)


class PrevActionReward(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Append the previous action and reward to the flattened observation.

    A recurrent agent that sees what it just did and what that earned can tell its own
    exploration from the task's dynamics (the usual input of memory and meta-RL tasks). The
    observation becomes a flat float32 Box: `spaces.flatten` of the observation, the action
    (categorical ones one-hot, Box ones clipped to their bounds) and the reward; after every
    reset the action and reward parts are zeros.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        obs_box = _flat_box(env.observation_space, "observation")
        action_box = _flat_box(env.action_space, "action")
        low = np.concatenate([obs_box.low, action_box.low, [-np.inf]]).astype(np.float32)
        high = np.concatenate([obs_box.high, action_box.high, [np.inf]]).astype(np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self._no_action = np.zeros(action_box.shape, np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A new episode has no previous action or reward: both parts are zeros."""
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observe(obs, self._no_action, 0.0), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env, then show the action just taken and the reward it earned."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return (self._observe(obs, self._encode_action(action), reward), reward, terminated,
                truncated, info)

    def _encode_action(self, action: Any) -> np.ndarray:
        """Box actions as the env applies them (clipped); categorical ones one-hot."""
        space = self.env.action_space
        if isinstance(space, spaces.Box):
            action = np.clip(np.asarray(action, np.float64).reshape(space.shape), space.low,
                             space.high)
        return spaces.flatten(space, action).astype(np.float32, copy=False)

    def _observe(self, obs: Any, action_code: np.ndarray, reward: SupportsFloat) -> np.ndarray:
        flat = spaces.flatten(self.env.observation_space, obs).astype(np.float32, copy=False)
        return np.concatenate([flat, action_code, np.array([reward], np.float32)])


class WrapperKind(str, Enum):
    """Names of the wrappers as they appear in config files."""

    MASK_VELOCITY = "mask_velocity"
    NOISY = "noisy"
    FLICKER = "flicker"
    PREV_ACTION_REWARD = "prev_action_reward"


_WRAPPER_CLASSES: Mapping[WrapperKind, type[gym.Wrapper]] = MappingProxyType(
    {
        WrapperKind.MASK_VELOCITY: MaskVelocity,
        WrapperKind.NOISY: NoisyObservation,
        WrapperKind.FLICKER: FlickerObservation,
        WrapperKind.PREV_ACTION_REWARD: PrevActionReward,
    }
)


def _parse_kind(name: object) -> WrapperKind:
    """Map a config name to a kind, suggesting the closest valid one on a typo."""
    try:
        return WrapperKind(name)
    except ValueError:
        valid = [kind.value for kind in WrapperKind]
        closest = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.0)
        hint = f"; did you mean {closest[0]!r}?" if closest else ""
        raise ValueError(
            f"unknown wrapper kind {name!r}{hint} (valid: {', '.join(valid)})"
        ) from None


@dataclass(frozen=True)
class WrapperSpec:
    """A wrapper to apply, as plain picklable data (it travels to vector-env worker processes)."""

    kind: WrapperKind
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Normalise the kind and check argument names now, not when the env is built."""
        kind = _parse_kind(self.kind)
        kwargs = dict(self.kwargs)
        signature = inspect.signature(_WRAPPER_CLASSES[kind])
        try:
            signature.bind(None, **kwargs)
        except TypeError as error:
            raise ValueError(f"bad arguments for wrapper {kind.value!r}: {error}") from None
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "kwargs", kwargs)

    def apply(self, env: gym.Env) -> gym.Env:
        """Wrap `env` with this wrapper."""
        return _WRAPPER_CLASSES[self.kind](env, **self.kwargs)


def _parse_item(item: WrapperSpec | str | Mapping[str, Any]) -> WrapperSpec:
    """Accept `"kind"`, `{"kind": {...kwargs}}` or an existing spec."""
    if isinstance(item, WrapperSpec):
        return item
    if isinstance(item, str):
        return WrapperSpec(_parse_kind(item))
    if isinstance(item, Mapping) and len(item) == 1:
        ((name, kwargs),) = item.items()
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"arguments of wrapper {name!r} must be a mapping, got {kwargs!r}")
        return WrapperSpec(_parse_kind(name), kwargs)
    raise ValueError(
        f"a wrapper entry must be a kind name or a one-key mapping {{kind: {{args}}}}, got {item!r}"
    )


def parse_wrappers(
    items: Iterable[WrapperSpec | str | Mapping[str, Any]] | None,
) -> tuple[WrapperSpec, ...]:
    """Turn a config-style wrapper list into specs, failing early with a readable message."""
    if isinstance(items, (str, Mapping)):  # `wrappers: noisy` in YAML instead of a list
        raise ValueError(f"wrappers must be a list of entries, got {items!r}")
    specs = tuple(_parse_item(item) for item in items or ())
    _check_order(specs)
    return specs


def _check_order(specs: Sequence[WrapperSpec]) -> None:
    """`prev_action_reward` comes last: a wrapper after it would mask, noise or drop the
    action and reward it appends, or index into its flattened observation."""
    kind = WrapperKind.PREV_ACTION_REWARD
    if any(spec.kind is kind for spec in specs[:-1]):
        raise ValueError(f"{kind.value} must be the last wrapper listed, got "
                         f"[{', '.join(spec.kind.value for spec in specs)}]")
