"""Independent env stepping: the learner cannot tell its rollouts from in-process ones, results
do not depend on worker timing, and a killed worker is replaced without losing the rollout."""

import os
import signal

import numpy as np
import pytest
import torch

from evopop.agents import NetSpec
from evopop.agents.buffer import split_sequences
from evopop.agents.episodes import EpisodeLog
from evopop.agents.ppo import recompute_log_probs
from evopop.agents.train import train_agent
from evopop.envs import EnvSpec
from evopop.execution.pool import WorkerError
from evopop.execution.processes import ProcessPool
from evopop.rollouts import make_rollout_envs, split_envs

SPECS = [
    NetSpec(cell="lstm", hidden_size=16, head=(16,)),
    NetSpec(cell="gru", hidden_size=16, head=(), shared_encoder=True),
    NetSpec(cell="lstm", hidden_size=16, head=(16,), sde=True),
]


def _spec(env_id: str, copies: int, workers: int) -> EnvSpec:
    return EnvSpec(id=env_id, num_envs=copies, vectorization="independent", env_workers=workers)


@pytest.fixture(scope="module")
def pendulum_envs():
    envs = make_rollout_envs(_spec("PendulumNoVel-v1", 3, 2))
    yield envs
    envs.close()


@pytest.fixture(scope="module")
def cartpole_envs():
    envs = make_rollout_envs(_spec("CartPoleNoVel-v1", 4, 2))
    yield envs
    envs.close()


def _agent(make_agent, envs, spec=SPECS[0], steps=120, **params):
    return make_agent(envs, spec=spec, learn_step=steps, max_seq_len=8, batch_size=64, **params)


def test_envs_are_split_evenly_over_workers():
    assert split_envs(7, 3) == [3, 2, 2]
    assert split_envs(4, 4) == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="env workers"):
        split_envs(2, 3)


def test_bad_worker_count_is_a_user_error():
    with pytest.raises(ValueError, match="env_workers"):
        _spec("CartPoleNoVel-v1", 2, 3)


@pytest.mark.parametrize("spec", SPECS, ids=["lstm", "gru-shared", "lstm-sde"])
def test_recomputed_log_probs_equal_stored(make_agent, pendulum_envs, spec):
    agent = _agent(make_agent, pendulum_envs, spec, steps=260)
    pendulum_envs.start(0, 1)
    buf = pendulum_envs.collect(agent, 260)  # Pendulum truncates at 200: a bootstrap in every env
    assert buf.obs.shape[:2] == (260, 3)
    assert buf.truncated.sum() == 3 and buf.episode_start[1:].any()
    assert split_sequences(buf.episode_start, 8).count > buf.episode_start.sum() + 3
    recomputed = recompute_log_probs(agent, buf)
    ratio = np.exp(recomputed - buf.log_probs)
    assert np.abs(ratio - 1.0).max() < 1e-5


def test_hidden_state_is_carried_across_rollouts_and_reset_at_episode_starts(
        make_agent, cartpole_envs):
    agent = _agent(make_agent, cartpole_envs, steps=40)
    cartpole_envs.start(0, 1)
    bufs = [cartpole_envs.collect(agent, 40) for _ in range(2)]
    states = torch.cat([b.states for b in bufs])
    obs = np.concatenate([b.obs for b in bufs])
    starts = np.concatenate([b.episode_start for b in bufs])
    assert starts[0].all() and starts[1:].any() and not starts[40].all()
    norms = states.abs().flatten(1, 2).sum(dim=(1, 3))  # [T, N]
    assert (norms[torch.from_numpy(starts)] == 0).all()
    assert (norms[torch.from_numpy(~starts)] > 0).all()
    with torch.no_grad():  # across the rollout boundary too: state 40 is the output of step 39
        for t in range(len(obs) - 1):
            _, _, new = agent.net(torch.from_numpy(obs[t])[None], states[t])
            carry = ~starts[t + 1]
            torch.testing.assert_close(new[:, :, carry], states[t + 1][:, :, carry])


def test_normaliser_statistics_count_every_step_once(make_agent, cartpole_envs):
    agent = _agent(make_agent, cartpole_envs, steps=50, normalize_obs=True,
                   normalize_rewards=True)
    before = agent.obs_norm.rms.count
    cartpole_envs.start(0, 1)
    cartpole_envs.collect(agent, 50)
    assert agent.obs_norm.rms.count == pytest.approx(before + 50 * 4)
    assert agent.reward_scaler.rms.count == pytest.approx(before + 50 * 4)
    assert np.all(agent.obs_norm.rms.var != 1.0)


def _train_weights(make_agent, workers: int) -> list[torch.Tensor]:
    envs = make_rollout_envs(_spec("CartPoleNoVel-v1", 4, workers))
    try:
        agent = _agent(make_agent, envs, steps=64, normalize_obs=True)
        train_agent(agent, envs, 2 * 64 * 4, seed=7)
    finally:
        envs.close()
    return [p.detach().clone() for p in agent.net.parameters()]


def test_training_is_a_function_of_the_seed_not_of_worker_timing(make_agent):
    first, second = _train_weights(make_agent, 2), _train_weights(make_agent, 2)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_worker_killed_between_rollouts_is_restarted(make_agent):
    envs = make_rollout_envs(_spec("CartPoleNoVel-v1", 4, 2))
    try:
        agent = _agent(make_agent, envs, steps=30)
        envs.start(0, 1)
        envs.collect(agent, 30)
        victim = envs.worker_pids()[1]
        _kill(victim)
        buf = envs.collect(agent, 30)
        assert envs.restarts == 1
        assert envs.worker_pids()[1] != victim
        assert buf.obs.shape[:2] == (30, 4)
        assert buf.episode_start[0, 2:].all()  # the new worker's envs start new episodes
        assert np.abs(np.exp(recompute_log_probs(agent, buf) - buf.log_probs) - 1).max() < 1e-5
    finally:
        envs.close()


def test_worker_killed_mid_rollout_is_restarted_and_the_rollout_completes(make_agent,
                                                                          monkeypatch):
    envs = make_rollout_envs(_spec("PendulumNoVel-v1", 2, 2))
    try:
        steps = 600
        agent = _agent(make_agent, envs, steps=steps)
        envs.start(0, 1)
        envs.collect(agent, 10)  # workers up, 10 steps into their episodes
        submit, killed = ProcessPool.submit, []

        def submit_then_kill(self, worker, *args):
            submit(self, worker, *args)
            if worker == 0 and not killed:  # worker 0 has the request: kill it at work
                killed.append(self.pids()[0])
                _kill(killed[0])

        monkeypatch.setattr(ProcessPool, "submit", submit_then_kill)
        buf = envs.collect(agent, steps)
        assert envs.restarts == 1 and envs.worker_pids()[0] != killed[0]
        assert buf.obs.shape[:2] == (steps, 2)
        # the replacement starts fresh episodes: truncations at 199, 399, 599 for env 0;
        # the survivor continues its episode (10 steps in): truncations at 189, 389, 589
        assert buf.episode_start[0, 0] and not buf.episode_start[0, 1]
        assert np.flatnonzero(buf.truncated[:, 0]).tolist() == [199, 399, 599]
        assert np.flatnonzero(buf.truncated[:, 1]).tolist() == [189, 389, 589]
    finally:
        monkeypatch.undo()
        envs.close()


def test_worker_that_keeps_dying_raises(make_agent, monkeypatch):
    envs = make_rollout_envs(_spec("CartPoleNoVel-v1", 2, 1))
    agent = _agent(make_agent, envs, steps=20)
    envs.start(0, 1)
    restart = ProcessPool.restart

    def doomed(self, worker):
        replaced = restart(self, worker)
        _kill(self.pids()[worker])
        return replaced

    try:
        monkeypatch.setattr(ProcessPool, "restart", doomed)
        _kill(envs.worker_pids()[0])
        with pytest.raises(WorkerError, match="died 4 times"):
            envs.collect(agent, 20)
    finally:
        monkeypatch.undo()
        envs.close()


def test_episodes_of_all_workers_are_logged_in_the_order_they_ended(make_agent, cartpole_envs):
    agent = _agent(make_agent, cartpole_envs, steps=60)
    cartpole_envs.start(0, 1)
    for _ in range(2):
        cartpole_envs.collect(agent, 60)
    log = cartpole_envs.pop_episodes()
    assert len(log.returns) == len(log.lengths) == len(log.ends) > 4
    assert log.ends == sorted(log.ends) and log.ends[-1] <= 120


def test_interleave_orders_by_end_step_then_worker():
    first = EpisodeLog([1.0, 2.0], [5, 9], [{"m": 1.0}], [5, 9], [9])
    second = EpisodeLog([3.0, 4.0], [5, 7], [{"m": 3.0}, {"m": 4.0}], [5, 7], [5, 7])
    merged = EpisodeLog.interleave([first, second])
    assert merged.returns == [1.0, 3.0, 4.0, 2.0] and merged.ends == [5, 5, 7, 9]
    assert merged.lengths == [5, 5, 7, 9]
    assert [m["m"] for m in merged.metrics] == [3.0, 4.0, 1.0]
