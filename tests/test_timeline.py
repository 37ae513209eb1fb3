"""`evopop evaluate --plot`: window bookkeeping, a recorded satellite episode, its PNG, the CLI.

The satellite tests need bsk-rl and skip without it (their fixture calls `importorskip`); the
window arithmetic and the refusal of a non-satellite agent run everywhere.
"""

import json
from itertools import pairwise
from pathlib import Path

import gymnasium as gym
import matplotlib.image
import numpy as np
import pytest

from evopop.agents import Agent, evaluate
from evopop.agents.checkpoint import save_agent
from evopop.cli import main
from evopop.envs import make_env
from evopop.envs.satellite import SATELLITE_ENV_ID, SatelliteAction
from evopop.envs.satellite_timeline import (
    Timeline,
    TimelineError,
    draw_timeline,
    eclipse_windows,
    ground_station_windows,
    is_satellite_env,
    merge_windows,
    record_timeline,
)
from evopop.inference import default_timeline_path, policy_step
from evopop.seeding import torch_generator

SHORT = {"duration_orbits": 0.2}  # 1140 s of sim time: about a second per episode
END_S = 1140.0
# seeds whose random orbit, within the first 0.2 orbits, has both an eclipse and a ground-station
# pass (4), or starts in eclipse (3)
BOTH_WINDOWS_SEED = 4
STARTS_IN_ECLIPSE_SEED = 3
ORBIT_S = 5700.0  # ScannerConfig.orbit_period_s, the observation's time normaliser


class FakeTrajectory:
    """bsk-rl's `next_eclipse` over fixed transition lists: next start and end after t."""

    def __init__(self, starts: list[float], ends: list[float]) -> None:
        self.starts, self.ends = starts, ends

    def next_eclipse(self, t: float) -> tuple[float, float]:
        later_starts = [s for s in self.starts if s > t]
        later_ends = [e for e in self.ends if e > t]
        if not (later_starts and later_ends):
            return 1.0, 1.0  # what bsk-rl returns when it finds no transition
        return min(later_starts), min(later_ends)


def test_eclipse_walk_starts_in_eclipse_and_clips_to_the_episode() -> None:
    trajectory = FakeTrajectory(starts=[400.0, 1400.0, 2400.0], ends=[100.0, 900.0, 1900.0])
    assert eclipse_windows(trajectory, 1600.0) == ((0.0, 100.0), (400.0, 900.0), (1400.0, 1600.0))
    assert eclipse_windows(trajectory, 1400.0) == ((0.0, 100.0), (400.0, 900.0))


def test_eclipse_walk_without_eclipses_is_empty() -> None:
    assert eclipse_windows(FakeTrajectory([], []), 5000.0) == ()
    assert eclipse_windows(FakeTrajectory([300.0], []), 5000.0) == ()


def test_windows_are_clipped_merged_and_filtered_by_type() -> None:
    assert merge_windows([(50.0, 80.0), (-5.0, 10.0), (70.0, 90.0), (95.0, 300.0)], 200.0) == (
        (0.0, 10.0),
        (50.0, 90.0),
        (95.0, 200.0),
    )
    assert merge_windows([(300.0, 400.0), (20.0, 20.0)], 200.0) == ()
    opportunities = [
        {"type": "ground_station", "window": (10.0, 30.0)},
        {"type": "target", "window": (0.0, 100.0)},
        {"type": "ground_station", "window": (25.0, 40.0)},
    ]
    assert ground_station_windows(opportunities, 100.0) == ((10.0, 40.0),)


def test_satellite_ids_are_recognised() -> None:
    assert is_satellite_env(SATELLITE_ENV_ID)
    assert is_satellite_env(f"evopop.envs.satellite:{SATELLITE_ENV_ID}")
    assert not is_satellite_env("CartPole-v1")
    assert default_timeline_path(Path("run/elite.safetensors")) == Path("run/elite_timeline.png")


def test_plot_on_a_cartpole_agent_is_one_line_with_exit_code_2(tmp_path, capsys) -> None:
    env = make_env("CartPole-v1")
    path = tmp_path / "cart.safetensors"
    save_agent(
        Agent(env.observation_space, env.action_space), path, extra={"env_id": "CartPole-v1"}
    )
    assert main(["evaluate", str(path), "--episodes", "1", "--plot"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "evopop: --plot draws a satellite timeline; CartPole-v1 has none\n"
    assert captured.out == ""  # refused before any episode ran
    assert list(tmp_path.iterdir()) == [path]


def test_record_timeline_refuses_a_non_satellite_env() -> None:
    env = make_env("CartPole-v1")
    with pytest.raises(TimelineError, match="CartPole-v1 is not the evopop/ScanningSatellite"):
        record_timeline(env, policy_step(Agent(env.observation_space, env.action_space)))


@pytest.fixture
def env(satellite_ready: Path) -> gym.Env:
    environment = gym.make(SATELLITE_ENV_ID, **SHORT)
    yield environment
    environment.close()


@pytest.fixture
def agent(env: gym.Env) -> Agent:
    return Agent(env.observation_space, env.action_space, seed=1)


def test_recorded_episode_is_consistent_with_the_env(env: gym.Env, agent: Agent) -> None:
    first_obs, _ = env.reset(seed=BOTH_WINDOWS_SEED)
    timeline = record_timeline(env, policy_step(agent), seed=BOTH_WINDOWS_SEED)
    steps = len(timeline.actions)
    assert steps > 1 and timeline.time_s.shape == (steps + 1,)
    assert timeline.wheels.shape == (steps + 1, 3)
    assert timeline.time_s[0] == 0.0 and np.all(np.diff(timeline.time_s) > 0)
    if timeline.alive:
        assert timeline.end_s == pytest.approx(END_S)
    for level in (timeline.battery, timeline.storage):
        assert np.all((level >= 0.0) & (level <= 1.0))
    assert np.all(np.abs(timeline.wheels) <= 1.0)
    assert set(timeline.actions.tolist()) <= {a.value for a in SatelliteAction}
    # the first sample is what the observation reported at reset (storage, battery, wheels)
    np.testing.assert_allclose(
        [timeline.storage[0], timeline.battery[0], *timeline.wheels[0]], first_obs[:5], rtol=1e-6
    )
    for windows in (timeline.eclipses, timeline.ground_stations):
        assert windows, "this seed's orbit has both kinds of window in the episode"
        assert all(0.0 <= start < end <= timeline.end_s for start, end in windows)
        assert all(a[1] < b[0] for a, b in pairwise(windows))
    # the observation's "next eclipse start" and "next ground-station open" agree (float32)
    assert timeline.eclipses[0][0] == pytest.approx(first_obs[9] * ORBIT_S, abs=0.01)
    assert timeline.ground_stations[0][0] == pytest.approx(first_obs[7] * ORBIT_S, abs=0.01)


def test_an_episode_starting_in_eclipse_has_a_window_from_zero(env, agent) -> None:
    first_obs, _ = env.reset(seed=STARTS_IN_ECLIPSE_SEED)
    timeline = record_timeline(env, policy_step(agent), seed=STARTS_IN_ECLIPSE_SEED)
    assert first_obs[10] < first_obs[9]  # the next eclipse end comes before the next start
    assert timeline.eclipses[0] == pytest.approx((0.0, first_obs[10] * ORBIT_S), abs=0.01)


@pytest.mark.parametrize("stochastic", [False, True])
def test_timeline_return_is_the_evaluation_return(env, agent, stochastic) -> None:
    def generator():
        return torch_generator(5) if stochastic else None

    timeline = record_timeline(env, policy_step(agent, not stochastic, generator()), 5)
    result = evaluate(agent, env, 1, seed=5, deterministic=not stochastic, generator=generator())
    assert timeline.episode_return == result.returns[0]
    assert len(timeline.actions) == result.lengths[0]


def test_draw_timeline_writes_a_png(env, agent, tmp_path) -> None:
    timeline = record_timeline(env, policy_step(agent), seed=BOTH_WINDOWS_SEED)
    path = draw_timeline(timeline, tmp_path / "sub" / "t.png")
    assert path == tmp_path / "sub" / "t.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (750, 1000)
    assert np.unique(image.reshape(-1, image.shape[-1]), axis=0).shape[0] > 50  # not blank
    with pytest.raises(TimelineError, match=r"use a file ending in \.png"):
        draw_timeline(timeline, tmp_path / "t.jpg")


def test_a_failed_episode_is_drawn(tmp_path) -> None:
    """No env needed: the title and strip must cope with a short, failed episode."""
    timeline = Timeline(
        time_s=np.array([0.0, 60.0, 150.0]),
        battery=np.array([0.2, 0.1, 0.0]),
        storage=np.array([0.5, 0.6, 0.7]),
        wheels=np.array([[0.1, 0.2, 0.3]] * 3),
        actions=np.array([0, 0]),
        eclipses=((0.0, 150.0),),
        ground_stations=(),
        episode_return=-1.0,
        alive=False,
        orbit_period_s=ORBIT_S,
        seed=0,
    )
    path = draw_timeline(timeline, tmp_path / "failed.png")
    assert path.stat().st_size > 10_000


def _satellite_agent_file(tmp_path: Path, env: gym.Env) -> Path:
    path = tmp_path / "sat.safetensors"
    section = {"id": SATELLITE_ENV_ID, "kwargs": SHORT}
    save_agent(
        Agent(env.observation_space, env.action_space, seed=2),
        path,
        extra={"env_id": SATELLITE_ENV_ID, "env": section},
    )
    return path


def test_cli_plot_writes_next_to_the_agent_file(env, tmp_path, capsys) -> None:
    agent_file = _satellite_agent_file(tmp_path, env)
    assert main(["evaluate", str(agent_file), "--episodes", "1", "--seed", "4", "--plot"]) == 0
    expected = tmp_path / "sat_timeline.png"
    assert expected.read_bytes()[:4] == b"\x89PNG"
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"plot    {expected}  (timeline of episode seed 4)"


def test_cli_plot_to_a_path_is_in_the_json(env, tmp_path, capsys) -> None:
    agent_file = _satellite_agent_file(tmp_path, env)
    out = tmp_path / "plots" / "episode.png"
    code = main(["evaluate", str(agent_file), "--episodes", "1", "--plot", str(out), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["timeline"] == str(out)
    # the satellite's episode metrics are reported too; one episode: alive is 0 or 1
    assert report["metrics"]["alive"] in (0.0, 1.0)
    assert report["metrics"]["reward"] == pytest.approx(report["returns"][0])
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "sat_timeline.png").exists()
