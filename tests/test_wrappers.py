"""Tests of the POMDP observation wrappers and their config parsing."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from evopop.agents.normalize import RunningMeanStd
from evopop.wrappers import (
    FlickerObservation,
    MaskVelocity,
    NoisyObservation,
    WrapperKind,
    WrapperSpec,
    parse_wrappers,
)


class ConstantEnv(gym.Env):
    """Always observes `value`, never ends: isolates exactly what a wrapper adds."""

    def __init__(self, value: float = 0.0, size: int = 4) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._obs = np.full(size, value, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self._obs.copy(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self._obs.copy(), 0.0, False, False, {}


def rollout(env: gym.Env, steps: int, seed: int) -> np.ndarray:
    """Observations of a seeded reset and `steps` seeded random steps (plus any resets)."""
    env.action_space.seed(seed)
    observations = [env.reset(seed=seed)[0]]
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        if terminated or truncated:
            observations.append(env.reset()[0])
    return np.stack(observations)


def test_mask_velocity_builtin_indices_on_plain_env() -> None:
    env = MaskVelocity(gym.make("CartPole-v1"))
    assert env.indices == (1, 3)
    assert env.observation_space == env.env.observation_space
    obs = rollout(env, 20, seed=0)
    assert np.all(obs[:, [1, 3]] == 0)
    assert np.any(obs[:, [0, 2]] != 0)


def test_mask_velocity_explicit_indices() -> None:
    env = MaskVelocity(gym.make("Pendulum-v1"), indices=[0])
    obs = rollout(env, 5, seed=1)
    assert np.all(obs[:, 0] == 0)
    assert np.all(obs[:, 1:] != 0)


def test_mask_velocity_unknown_env_without_indices_raises() -> None:
    env = ConstantEnv(1.0)
    env.spec = EnvSpec(id="Constant-v0")
    with pytest.raises(ValueError, match=r"'Constant-v0'.*pass indices"):
        MaskVelocity(env)
    assert MaskVelocity(env, indices=[2]).observation(np.ones(4))[2] == 0


@pytest.mark.parametrize("indices", [[4], [-1], [0, 7]])
def test_mask_velocity_out_of_range_indices_raise(indices: list[int]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        MaskVelocity(ConstantEnv(), indices=indices)


def test_noisy_observation_has_requested_mean_and_std() -> None:
    sigma = 0.3
    env = NoisyObservation(ConstantEnv(0.0), sigma=sigma)
    noise = rollout(env, 2_499, seed=5).ravel()  # 2500 observations x 4 = 10000 samples
    assert noise.size == 10_000
    assert abs(noise.std() - sigma) < 0.05 * sigma
    assert abs(noise.mean()) < 0.05 * sigma
    assert env.observation_space.dtype == np.float32
    assert noise.dtype == np.float32


def test_noisy_observation_space_is_unbounded() -> None:
    env = NoisyObservation(gym.make("Pendulum-v1"), sigma=1.0)
    assert np.all(np.isinf(env.observation_space.low))
    assert env.observation_space.shape == (3,)
    assert all(env.observation_space.contains(obs) for obs in rollout(env, 50, seed=0))


def test_flicker_zeroes_whole_observations_with_probability_p() -> None:
    obs = rollout(FlickerObservation(ConstantEnv(1.0), p=0.3), 4_999, seed=2)
    zeroed = np.all(obs == 0, axis=1)
    assert np.all(zeroed | np.all(obs == 1, axis=1))  # all or nothing
    assert abs(zeroed.mean() - 0.3) < 0.03


@pytest.mark.parametrize(("p", "expected"), [(0.0, 1.0), (1.0, 0.0)])
def test_flicker_extremes(p: float, expected: float) -> None:
    obs = rollout(FlickerObservation(ConstantEnv(1.0), p=p), 500, seed=3)
    assert np.all(obs == expected)


@pytest.mark.parametrize(
    ("wrapper", "value"),
    [
        (NoisyObservation, -0.1),
        (NoisyObservation, float("nan")),
        (FlickerObservation, 1.5),
        (FlickerObservation, -0.01),
    ],
)
def test_invalid_parameters_raise(wrapper: type[gym.ObservationWrapper], value: float) -> None:
    with pytest.raises(ValueError, match=r">= 0|in \[0, 1\]"):
        wrapper(ConstantEnv(), value)


def test_same_seed_gives_same_noisy_observations() -> None:
    def make() -> gym.Env:
        return FlickerObservation(NoisyObservation(gym.make("CartPole-v1"), 0.1), 0.2)

    first, second = rollout(make(), 60, seed=11), rollout(make(), 60, seed=11)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, rollout(make(), 60, seed=12))


def test_random_wrappers_do_not_touch_env_dynamics() -> None:
    plain = gym.make("Pendulum-v1")
    wrapped = NoisyObservation(FlickerObservation(gym.make("Pendulum-v1"), 0.5), 0.1)
    actions = np.random.default_rng(0).uniform(-2, 2, size=(30, 1)).astype(np.float32)
    for seed in (4, None):  # a seeded reset, then an unseeded one that continues the stream
        plain_obs, _ = plain.reset(seed=seed)
        wrapped_obs, _ = wrapped.reset(seed=seed)
        assert not np.array_equal(wrapped_obs, plain_obs)  # the wrappers did act
        for action in actions:
            plain.step(action)
            wrapped.step(action)
            np.testing.assert_array_equal(plain.unwrapped.state, wrapped.unwrapped.state)
        assert (
            plain.unwrapped.np_random.bit_generator.state
            == wrapped.unwrapped.np_random.bit_generator.state
        )


def test_parse_wrappers_accepts_strings_mappings_and_specs() -> None:
    spec = WrapperSpec(WrapperKind.FLICKER, {"p": 0.1})
    parsed = parse_wrappers(
        ["mask_velocity", {"noisy": {"sigma": 0.2}}, spec, {"flicker": {"p": 1}}]
    )
    assert parsed[0] == WrapperSpec(WrapperKind.MASK_VELOCITY, {})
    assert parsed[1].kind is WrapperKind.NOISY
    assert parsed[1].kwargs == {"sigma": 0.2}
    assert parsed[2] is spec
    assert pickle.loads(pickle.dumps(parsed)) == parsed  # specs travel to worker processes
    assert parse_wrappers(None) == ()
    with pytest.raises(ValueError, match="must be a list"):
        parse_wrappers("noisy")


def test_parsed_wrappers_apply_in_order() -> None:
    env = gym.make("CartPole-v1")
    for spec in parse_wrappers(["mask_velocity", {"noisy": {"sigma": 0.5}}]):
        env = spec.apply(env)
    assert isinstance(env, NoisyObservation)
    assert isinstance(env.env, MaskVelocity)
    assert np.all(rollout(env, 3, seed=0)[:, [1, 3]] != 0)  # noise is added after masking


@pytest.mark.parametrize(
    ("name", "closest"),
    [("noisey", "noisy"), ("flick", "flicker"), ("mask_velocities", "mask_velocity")],
)
def test_unknown_kind_suggests_closest(name: str, closest: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'.*did you mean '{closest}'"):
        parse_wrappers([name])
    with pytest.raises(ValueError, match=f"did you mean '{closest}'"):
        parse_wrappers([{name: {}}])


@pytest.mark.parametrize(
    "item",
    [
        {"noisy": {"sigam": 0.1}},
        "noisy",
        {"noisy": {"sigma": 0.1}, "flicker": {"p": 0.1}},
        {"flicker": 0.3},
        3,
    ],
)
def test_malformed_wrapper_entries_raise(item: Any) -> None:
    with pytest.raises(ValueError):
        parse_wrappers([item])


def test_running_stats_split_over_workers_merge_to_the_whole():
    """Workers start from the learner's stats; merging what each added equals one pass."""
    rng = np.random.default_rng(0)
    seen, share1, share2 = (rng.normal(m, s, (n, 3)) for m, s, n in [(3, 2, 50), (-1, 5, 30),
                                                                      (7, 1, 20)])
    whole = RunningMeanStd(3)
    for batch in (seen, share1, share2):
        whole.update(batch)
    learner = RunningMeanStd(3)
    learner.update(seen)
    worker1, worker2 = learner.copy(), learner.copy()
    worker1.update(share1[:10])
    worker1.update(share1[10:])
    worker2.update(share2)
    base = learner.copy()
    for worker in (worker1, worker2):
        learner.combine(worker.since(base))
    np.testing.assert_allclose(learner.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(learner.var, whole.var, rtol=1e-12)
    assert learner.count == pytest.approx(whole.count)
    assert worker2.since(worker2).count == 0.0
