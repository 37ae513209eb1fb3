"""Tests of NoVel registration, make_env and make_vec_env (SAME_STEP autoreset)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from evopop.envs import (
    NOVEL_IDS,
    EnvError,
    EnvSpec,
    Vectorization,
    env_ids,
    make_env,
    make_vec_env,
    novel,
    register_novel_envs,
)
from evopop.envs.fast import FastVectorEnv
from evopop.wrappers import MaskVelocity, NoisyObservation

CLASSIC_MASKS = {
    "CartPoleNoVel-v1": [1, 3],
    "PendulumNoVel-v1": [2],
    "MountainCarNoVel-v0": [1],
    "MountainCarContinuousNoVel-v0": [1],
    "AcrobotNoVel-v1": [4, 5],
}
LUNAR_MASKS = {"LunarLanderNoVel-v3": [2, 3, 5], "LunarLanderContinuousNoVel-v3": [2, 3, 5]}
CARTPOLE_THETA_LIMIT = 12 * 2 * np.pi / 360  # CartPole terminates beyond this pole angle
CARTPOLE_X_LIMIT = 2.4
CARTPOLE_RESET_BOUND = 0.05  # CartPole resets every state entry uniformly in ±0.05


def random_observations(env: gym.Env, steps: int, seed: int) -> np.ndarray:
    """Observations of a seeded reset followed by seeded random actions."""
    env.action_space.seed(seed)
    observations = [env.reset(seed=seed)[0]]
    observations += [env.step(env.action_space.sample())[0] for _ in range(steps)]
    return np.stack(observations)


def assert_masked(env_id: str, masked: list[int]) -> None:
    """Masked entries are exactly zero, the rest carry information."""
    env = make_env(env_id)
    obs = random_observations(env, 10, seed=0)
    unmasked = [i for i in range(obs.shape[1]) if i not in masked]
    assert np.all(obs[:, masked] == 0)
    assert np.any(obs[:, unmasked] != 0)
    assert env.observation_space == gym.make(NOVEL_IDS[env_id]).observation_space
    env.close()


@pytest.mark.parametrize(("env_id", "masked"), CLASSIC_MASKS.items())
def test_novel_classic_control_ids_mask_velocities(env_id: str, masked: list[int]) -> None:
    assert_masked(env_id, masked)


@pytest.mark.skipif(not novel.box2d_available(), reason="needs the box2d extra")
@pytest.mark.parametrize(("env_id", "masked"), LUNAR_MASKS.items())
def test_novel_lunar_lander_ids_mask_velocities(env_id: str, masked: list[int]) -> None:
    assert_masked(env_id, masked)


def test_missing_box2d_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(novel, "box2d_available", lambda: False)
    for env_id in LUNAR_MASKS:
        with pytest.raises(EnvError, match=r'needs Box2D.*pip install "evopop\[box2d\]"'):
            make_env(env_id)
    with pytest.raises(EnvError, match="needs Box2D"):
        make_vec_env(EnvSpec(id="LunarLanderNoVel-v3", vectorization=Vectorization.ASYNC), 2)


def test_novel_ids_keep_base_episode_limits() -> None:
    for novel_id, base_id in NOVEL_IDS.items():
        assert gym.spec(novel_id).max_episode_steps == gym.spec(base_id).max_episode_steps
    assert gym.spec("CartPoleNoVel-v1").max_episode_steps == 500
    assert make_env("PendulumNoVel-v1").spec.max_episode_steps == 200


def test_episode_limit_can_be_overridden() -> None:
    env = make_env(EnvSpec(id="PendulumNoVel-v1", kwargs={"max_episode_steps": 5}))
    env.reset(seed=0)
    truncations = [env.step(env.action_space.sample())[3] for _ in range(5)]
    assert truncations == [False] * 4 + [True]


def test_render_mode_passes_through() -> None:
    env = make_env("CartPoleNoVel-v1", render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape == (400, 600, 3)


def test_registration_is_idempotent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_novel_envs()
        register_novel_envs()
    ids = env_ids()
    assert ids[: len(NOVEL_IDS)] == list(NOVEL_IDS)
    assert all(i.startswith("evopop/") for i in ids[len(NOVEL_IDS):])  # spacecraft, if installed
    assert all(env_id in gym.registry for env_id in ids)


def test_make_env_applies_wrappers_in_order() -> None:
    env = make_env(EnvSpec(id="CartPole-v1", wrappers=["mask_velocity", {"noisy": {"sigma": 0.1}}]))
    assert isinstance(env, NoisyObservation)
    assert isinstance(env.env, MaskVelocity)
    # mask_velocity on a NoVel id resolves to the base env's indices
    assert make_env(EnvSpec(id="AcrobotNoVel-v1", wrappers=["mask_velocity"])).indices == (4, 5)


def test_module_prefixed_id_is_supported() -> None:
    assert make_env("evopop.envs:CartPoleNoVel-v1").spec.id == "CartPoleNoVel-v1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "CartPoleNoVl-v1"}, "unknown env id 'CartPoleNoVl-v1'.*'CartPoleNoVel-v1'"),
        (
            {"id": "CartPole-v1", "packages": ["evopop_no_such_pkg"]},
            "env package 'evopop_no_such_pkg' is not installed",
        ),
        ({"id": "CartPole-v1", "kwargs": {"gravity": 1.0}}, "bad env.kwargs"),
        ({"id": "FrozenLake-v1", "wrappers": ["mask_velocity"]}, "needs a Box"),
        ({"id": "CartPole-v1", "wrappers": ["noisey"]}, "did you mean 'noisy'"),
    ],
)
def test_make_env_errors_are_env_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(EnvError, match=message):
        make_env(EnvSpec(**kwargs))


def test_vec_env_argument_errors() -> None:
    with pytest.raises(EnvError, match="num_envs"):
        make_vec_env("CartPoleNoVel-v1", 0)
    with pytest.raises(ValueError, match="'auto', 'sync', 'fast', 'async' or 'independent'"):
        EnvSpec(id="CartPoleNoVel-v1", vectorization="threads")
    with pytest.raises(EnvError, match="'CartPoleNoVel-v1'"):
        make_vec_env(EnvSpec(id="CartPoleNoVl-v1", vectorization="async"), 2)


@pytest.mark.parametrize("mode", [*Vectorization, "sync", "async"])
def test_vec_env_uses_same_step_autoreset(mode: Vectorization | str) -> None:
    envs = make_vec_env(EnvSpec(id="CartPoleNoVel-v1", vectorization=mode), 2, seed=0)
    # independent stepping collects whole rollouts; whatever steps in lockstep gets async;
    # auto settles on envpool's batch, which covers CartPole
    expected = {"sync": SyncVectorEnv, "async": AsyncVectorEnv, "independent": AsyncVectorEnv,
                "fast": FastVectorEnv, "auto": FastVectorEnv}
    assert isinstance(envs, expected[Vectorization(mode).value])
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    envs.close()


def test_done_step_returns_reset_obs_and_final_obs() -> None:
    envs = make_vec_env("CartPoleNoVel-v1", 2, seed=0)
    push_left = np.zeros(2, dtype=np.int64)  # topples the pole within a few dozen steps
    for _ in range(100):
        obs, _, terminated, truncated, infos = envs.step(push_left)
        if np.any(terminated | truncated):
            break
    done = terminated | truncated
    np.testing.assert_array_equal(infos["_final_obs"], done)
    for i in np.flatnonzero(done):
        final = infos["final_obs"][i]
        assert abs(final[2]) > CARTPOLE_THETA_LIMIT or abs(final[0]) > CARTPOLE_X_LIMIT
        assert np.all(np.abs(obs[i]) <= CARTPOLE_RESET_BOUND)  # already the next episode
        assert np.all(obs[i, [1, 3]] == 0) and np.all(final[[1, 3]] == 0)
    # no junk NEXT_STEP transition: the step after a done is an ordinary rewarded step
    _, rewards, *_ = envs.step(push_left)
    np.testing.assert_array_equal(rewards, [1.0, 1.0])
    envs.close()


def vec_rollout(mode: Vectorization, seed: int, steps: int = 60) -> tuple[np.ndarray, int]:
    """Observations (including final ones) of a seeded noisy vec env, and its number of dones."""
    spec = EnvSpec(id="CartPoleNoVel-v1", vectorization=mode, wrappers=[{"noisy": {"sigma": 0.1}}])
    envs = make_vec_env(spec, 3, seed=seed)
    rows = [envs.reset()[0]]
    num_done = 0
    for action in np.random.default_rng(seed).integers(0, 2, size=(steps, 3)):
        obs, _, terminated, truncated, infos = envs.step(action)
        rows.append(obs)
        if "final_obs" in infos:
            rows.append(np.stack(infos["final_obs"][infos["_final_obs"]]))
        num_done += int(np.sum(terminated | truncated))
    envs.close()
    return np.concatenate(rows), num_done


def test_same_seed_gives_identical_vec_rollouts_in_every_gymnasium_mode() -> None:
    """envpool's batch draws other resets (tests/test_fast_envs.py checks its dynamics)."""
    reference, num_done = vec_rollout(Vectorization.SYNC, seed=3)
    assert num_done > 0  # the comparison covers autoresets
    for mode in (Vectorization.ASYNC, Vectorization.INDEPENDENT):
        np.testing.assert_array_equal(vec_rollout(mode, seed=3)[0], reference)
    assert not np.array_equal(vec_rollout(Vectorization.SYNC, seed=4)[0], reference)


def test_seed_makes_spaces_deterministic() -> None:
    samples = []
    for _ in range(2):
        envs = make_vec_env("PendulumNoVel-v1", 2, seed=9)
        samples.append((envs.action_space.sample(), envs.observation_space.sample()))
        envs.close()
    for first, second in zip(*samples, strict=True):
        np.testing.assert_array_equal(first, second)
