"""The `prev_action_reward` wrapper: its flat observation space, the exact values it appends
(zeros after every reset), its place in the wrapper list, its vectorization, and a run trained
with it that `evopop evaluate`, `evopop export` and scripts/run_exported.py replay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv

from evopop.cli import main
from evopop.envs import EnvError, EnvSpec, coverage, make_env, make_vec_env
from evopop.envs.spec import Vectorization
from evopop.rundir import RunDir
from evopop.wrappers import PrevActionReward, parse_wrappers

ROOT = Path(__file__).resolve().parents[1]
INF = np.inf

# (space, flattened low, flattened high)
OBS_SPACES = {
    "box": (spaces.Box(-2.0, 3.0, (2, 2), np.float32), [-2] * 4, [3] * 4),
    "discrete": (spaces.Discrete(3, start=1), [0] * 3, [1] * 3),
    "multi_discrete": (spaces.MultiDiscrete([2, 3]), [0] * 5, [1] * 5),
}
ACTION_SPACES = {
    "discrete": (spaces.Discrete(4), [0] * 4, [1] * 4),
    "multi_discrete": (spaces.MultiDiscrete([3, 2], start=[1, 0]), [0] * 5, [1] * 5),
    "box": (spaces.Box(np.array([-1.0, -INF], np.float32), np.array([2.0, INF], np.float32)),
            [-1, -INF], [2, INF]),
}


class Tiny(gym.Env):
    """Observes `t % n` (on a Discrete(n), else a sample), earns 0.5 t at step t, ends after
    `length` steps."""

    def __init__(self, action_space: spaces.Space, length: int = 3,
                 observation_space: spaces.Space | None = None) -> None:
        self.observation_space = observation_space or spaces.Discrete(3)
        self.action_space = action_space
        self.length, self.t = length, 0

    def _obs(self) -> Any:
        space = self.observation_space
        if isinstance(space, spaces.Discrete):
            return int(space.start) + self.t % int(space.n)
        return space.sample()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return self._obs(), 0.5 * self.t, self.t == self.length, False, {}


def one_hot(index: int, size: int) -> list[float]:
    return [float(i == index) for i in range(size)]


@pytest.mark.parametrize("obs_key", OBS_SPACES)
@pytest.mark.parametrize("action_key", ACTION_SPACES)
def test_observation_space_is_the_flat_obs_action_and_reward(obs_key: str, action_key: str
                                                             ) -> None:
    obs_space, obs_low, obs_high = OBS_SPACES[obs_key]
    action_space, action_low, action_high = ACTION_SPACES[action_key]
    env = PrevActionReward(Tiny(action_space, observation_space=obs_space))
    space = env.observation_space
    assert isinstance(space, spaces.Box) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, [*obs_low, *action_low, -INF])
    np.testing.assert_array_equal(space.high, [*obs_high, *action_high, INF])
    obs, _ = env.reset(seed=0)
    assert space.contains(obs)
    np.testing.assert_array_equal(obs[len(obs_low):], 0.0)  # no previous action or reward
    obs, *_ = env.step(action_space.sample())
    assert obs.shape == space.shape and obs.dtype == np.float32


def test_discrete_actions_are_one_hot_and_reset_zeroes_them() -> None:
    env = PrevActionReward(Tiny(spaces.Discrete(4), length=2))
    np.testing.assert_array_equal(env.reset(seed=0)[0], [*one_hot(0, 3), 0, 0, 0, 0, 0])
    obs, reward, terminated, *_ = env.step(2)
    np.testing.assert_array_equal(obs, [*one_hot(1, 3), *one_hot(2, 4), 0.5])
    assert reward == 0.5 and not terminated
    obs, reward, terminated, *_ = env.step(np.int64(3))
    np.testing.assert_array_equal(obs, [*one_hot(2, 3), *one_hot(3, 4), 1.0])
    assert terminated
    np.testing.assert_array_equal(env.reset()[0], [*one_hot(0, 3), 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(env.step(0)[0], [*one_hot(1, 3), *one_hot(0, 4), 0.5])


def test_box_actions_are_clipped_to_their_bounds() -> None:
    env = PrevActionReward(Tiny(ACTION_SPACES["box"][0]))
    env.reset(seed=0)
    obs, *_ = env.step(np.array([5.0, -7.5], np.float32))
    np.testing.assert_array_equal(obs, [*one_hot(1, 3), 2.0, -7.5, 0.5])
    obs, *_ = env.step(np.array([-3.0, 1e9], np.float32))
    np.testing.assert_array_equal(obs, [*one_hot(2, 3), -1.0, 1e9, 1.0])


def test_multi_discrete_actions_across_an_autoreset_in_a_vector_env() -> None:
    """DelayedRecallEasy: observation [bit, query] one-hot, action [bit] one-hot; the 4th
    step is scored (+1 when right) and ends the episode; SAME_STEP autoreset returns the next
    episode's first observation, with zeros for action and reward, and the final one in infos."""
    envs = make_vec_env(EnvSpec(id="evopop/DelayedRecallEasy-v0", num_envs=1,
                                wrappers=["prev_action_reward"]), seed=5)
    assert isinstance(envs, SyncVectorEnv)
    first, _ = envs.reset(seed=5)
    target = int(envs.envs[0].unwrapped.target[0])
    np.testing.assert_array_equal(first[0], [*one_hot(target, 2), 1, 0, 0, 0, 0])
    wrong = 1 - target
    for query in (0, 0, 1):
        obs, reward, *_ = envs.step(np.array([[wrong]]))
        np.testing.assert_array_equal(obs[0], [1, 0, *one_hot(query, 2), *one_hot(wrong, 2), 0])
        assert reward[0] == 0
    obs, reward, terminated, _, infos = envs.step(np.array([[target]]))
    assert terminated[0] and reward[0] == 1.0
    np.testing.assert_array_equal(infos["final_obs"][0], [1, 0, 1, 0, *one_hot(target, 2), 1])
    next_target = int(envs.envs[0].unwrapped.target[0])
    np.testing.assert_array_equal(obs[0], [*one_hot(next_target, 2), 1, 0, 0, 0, 0])
    envs.close()


@pytest.mark.parametrize("role", ["observation", "action"])
def test_a_space_it_cannot_flatten_is_refused(role: str) -> None:
    sequence = spaces.Sequence(spaces.Discrete(2))
    env = Tiny(sequence) if role == "action" else Tiny(spaces.Discrete(2), 3, sequence)
    with pytest.raises(ValueError, match=f"cannot flatten the {role} space Sequence"):
        PrevActionReward(env)


def test_it_must_be_the_last_wrapper() -> None:
    specs = parse_wrappers([{"noisy": {"sigma": 0.1}}, {"flicker": {"p": 0.1}},
                            "prev_action_reward"])
    assert specs[-1].kind.value == "prev_action_reward"
    with pytest.raises(ValueError, match=r"^prev_action_reward must be the last wrapper listed, "
                                         r"got \[prev_action_reward, mask_velocity\]$"):
        parse_wrappers(["prev_action_reward", "mask_velocity"])
    with pytest.raises(EnvError, match="must be the last wrapper"):
        make_env(EnvSpec(id="CartPole-v1", wrappers=["prev_action_reward", "prev_action_reward"]))


def test_it_follows_the_pomdp_wrappers() -> None:
    env = make_env(EnvSpec(id="CartPoleNoVel-v1",
                           wrappers=["mask_velocity", "prev_action_reward"]))
    obs, _ = env.reset(seed=1)
    assert obs.shape == (7,) and obs[1] == obs[3] == 0 and np.all(obs[4:] == 0)
    obs, *_ = env.step(1)
    np.testing.assert_array_equal(obs[4:], [0, 1, 1])


def test_envpool_does_not_cover_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto settles on sync even where envpool covers the env; fast is a one-line error."""
    monkeypatch.setattr(coverage, "envpool_installed", lambda: True)
    assert EnvSpec(id="CartPoleNoVel-v1").vectorization is Vectorization.FAST
    spec = EnvSpec(id="CartPoleNoVel-v1", wrappers=[{"noisy": {"sigma": 0.1}},
                                                    "prev_action_reward"])
    assert spec.vectorization is Vectorization.SYNC
    envs = make_vec_env(spec, 2)
    assert isinstance(envs, SyncVectorEnv) and envs.single_observation_space.shape == (7,)
    envs.close()
    with pytest.raises(ValueError, match=r"vectorization fast: env.wrappers "
                                         r"\['prev_action_reward'\] are not applied by envpool"):
        EnvSpec(id="CartPoleNoVel-v1", vectorization="fast", wrappers=["prev_action_reward"])
    with pytest.raises(ValueError, match="did you mean 'prev_action_reward'"):
        make_env(EnvSpec(id="CartPoleNoVel-v1", wrappers=["prev_action_rewards"]))


TINY_RUN = """
env: {id: evopop/NoisyCue-v0, num_envs: 2, wrappers: [prev_action_reward]}
net: {cell: gru, hidden_size: 8, head: [8]}
ppo: {learn_step: 32, batch_size: 32, update_epochs: 1}
max_steps: 64
eval_episodes: 1
evolution: {population_size: 2, tournament_size: 2, evo_steps: 32}
parallel_members: 1
"""


@pytest.fixture(scope="module")
def elite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The elite of a one-generation run with the wrapper."""
    run = tmp_path_factory.mktemp("prev") / "run"
    cfg = run.parent / "tiny.yaml"
    cfg.write_text(TINY_RUN)
    assert main(["train", str(cfg), "--run-dir", str(run), "--quiet"]) == 0
    assert RunDir(run).read_summary().generations == 1
    return run / "elite.safetensors"


def evaluate(elite: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """`evopop evaluate --json` on 3 episodes; the env is rebuilt from the agent file."""
    capsys.readouterr()
    assert main(["evaluate", str(elite), "--episodes", "3", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_run_with_it_evaluates_on_the_wrapped_env(elite: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    report = evaluate(elite, capsys)
    assert report["env_id"] == "evopop/NoisyCue-v0" and report["lengths"] == [9, 9, 9]
    assert all(-3.0 <= r <= 1.0 for r in report["returns"])  # 1 - (a - c)^2, |a|, |c| <= 1


def test_its_exported_policy_replays_evaluate_without_torch(
        elite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """run_exported.py rebuilds the wrapper through evopop.envs (no torch) and plays what
    `evopop evaluate` plays; Box actions go through ONNX's float arithmetic, hence atol."""
    onnx = tmp_path / "elite.onnx"
    assert main(["export", str(elite), "--format", "onnx", "--out", str(onnx)]) == 0
    report = evaluate(elite, capsys)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_exported.py"),
                           str(onnx), "--episodes", "3", "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    replay = json.loads(proc.stdout)
    assert replay["lengths"] == report["lengths"]
    np.testing.assert_allclose(replay["returns"], report["returns"], atol=1e-4)
