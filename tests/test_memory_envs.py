"""The memory-task suite: exact dynamics, spaces, seeding and the optimal/random gap."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from evopop.envs import MEMORY_TASKS, env_ids, make_vec_env
from evopop.envs.memory import CountEvents, DelayedRecall, NoisyCue, TMaze


@pytest.mark.parametrize("task", MEMORY_TASKS, ids=lambda t: t.id)
def test_every_level_is_registered_valid_and_ends_within_its_limit(task):
    assert task.id in env_ids()
    env = gym.make(task.id)
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    ended = []
    for _ in range(task.max_episode_steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        ended.append(terminated or truncated)
        if ended[-1]:
            break
    assert ended[-1] and not any(ended[:-1])  # within the limit


def test_tmaze_cue_is_shown_once_and_only_the_cued_turn_at_the_junction_pays():
    env = TMaze(length=3)
    obs, _ = env.reset(seed=1)
    cue = env.cue
    np.testing.assert_array_equal(obs, [cue == TMaze.UP, cue == TMaze.DOWN, 0])
    for position in (1, 2, 3):
        obs, reward, terminated, _, _ = env.step(TMaze.FORWARD)
        assert (reward, terminated) == (0.0, False)
        np.testing.assert_array_equal(obs, [0, 0, position == 3])
    assert env.step(TMaze.FORWARD)[1:3] == (0.0, False)  # forward at the junction: stays
    wrong = TMaze.DOWN if cue == TMaze.UP else TMaze.UP
    probe = TMaze(length=3)
    probe.reset(seed=1)
    for _ in range(3):
        probe.step(TMaze.FORWARD)
    assert probe.step(wrong)[1:3] == (-1.0, True)
    assert env.step(cue)[1:3] == (1.0, True)
    early = TMaze(length=3)
    early.reset(seed=1)
    assert early.step(early.cue)[1:3] == (-1.0, True)  # the cued turn, but in the corridor


def test_tmaze_cues_are_balanced_and_seeded():
    cues = [TMaze().reset(seed=s)[0][0] for s in range(200)]
    assert 70 < sum(cues) < 130
    assert TMaze().reset(seed=7)[0].tolist() == TMaze().reset(seed=7)[0].tolist()


def test_delayed_recall_shows_bits_once_then_scores_the_answer_after_the_query():
    env = DelayedRecall(bits=3, delay=2)
    obs, _ = env.reset(seed=4)
    target = env.target.copy()
    np.testing.assert_array_equal(obs, [*target, 0])
    for _ in range(2):  # blank steps, any action, no reward
        obs, reward, terminated, _, _ = env.step(1 - target)
        np.testing.assert_array_equal(obs, [0, 0, 0, 0])
        assert (reward, terminated) == (0.0, False)
    obs, reward, terminated, _, _ = env.step(1 - target)
    np.testing.assert_array_equal(obs, [0, 0, 0, 1])  # the query
    assert (reward, terminated) == (0.0, False)
    answer = target.copy()
    answer[0] = 1 - answer[0]  # two of three right
    _, reward, terminated, _, _ = env.step(answer)
    assert terminated and reward == pytest.approx(2 * 2 / 3 - 1)


def test_count_events_scores_the_distance_to_the_true_count():
    env = CountEvents(length=4, p=0.5)
    obs, _ = env.reset(seed=3)
    seen = [int(obs[0])]
    for _ in range(3):
        obs, reward, terminated, _, _ = env.step(0)
        seen.append(int(obs[0]))
        assert (reward, terminated, int(obs[1])) == (0.0, False, 0)
    obs, reward, terminated, _, _ = env.step(0)
    assert obs.tolist() == [0, 1] and not terminated
    assert seen == env.events.tolist()
    count = sum(seen)
    off_by_one = count + 1 if count < 4 else count - 1
    assert env.step(off_by_one)[1:3] == (pytest.approx(1 - 2 / 4), True)
    exact = CountEvents(length=4)
    exact.reset(seed=3)
    for _ in range(4):
        exact.step(0)
    assert exact.step(count)[1:3] == (1.0, True)


def test_noisy_cue_readings_average_to_the_hidden_value_and_the_answer_is_scored():
    env = NoisyCue(sigma=0.3, reads=3, delay=1)
    obs, _ = env.reset(seed=5)
    readings = [obs[0]]
    for _ in range(2):
        obs, *_ = env.step([0.0])
        readings.append(obs[0])
    obs, reward, terminated, _, _ = env.step([0.0])
    assert obs.tolist() == [0.0, 0.0] and (reward, terminated) == (0.0, False)
    obs, *_ = env.step([0.0])
    assert obs.tolist() == [0.0, 1.0]
    _, reward, terminated, _, _ = env.step([0.5])
    assert terminated and reward == pytest.approx(1 - (0.5 - env.value) ** 2)
    many = NoisyCue(sigma=0.3, reads=400, delay=0)
    first, _ = many.reset(seed=2)
    values = [first[0]] + [many.step([0.0])[0][0] for _ in range(399)]
    assert np.mean(values) == pytest.approx(many.value, abs=0.05)


RANDOM_BELOW = {"evopop/TMaze-v0": 0.0, "evopop/DelayedRecall-v0": 0.25,
                "evopop/CountEvents-v0": 0.6, "evopop/NoisyCue-v0": 0.6}
"""What the README's table says random play scores (recall: 0 in expectation)."""


@pytest.mark.parametrize("env_id", list(RANDOM_BELOW))
def test_random_play_is_far_from_solved(env_id):
    envs = make_vec_env(env_id, 8, seed=0)
    returns, totals = [], np.zeros(8)
    while len(returns) < 64:
        _, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
        totals += reward
        for i in np.flatnonzero(terminated | truncated):
            returns.append(totals[i])
            totals[i] = 0.0
    envs.close()
    assert np.mean(returns) < RANDOM_BELOW[env_id]  # every task's optimum is 1 (NoisyCue ≈ 1)
