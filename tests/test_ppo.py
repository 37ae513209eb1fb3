"""The update sees exactly what collection saw: log-probs, hidden states, episode resets."""

import numpy as np
import pytest
import torch

from evopop.agents import NetSpec
from evopop.agents.buffer import compute_gae, next_values, split_sequences
from evopop.agents.ppo import FlatBatch, _minibatch_loss, ppo_update, recompute_log_probs
from evopop.envs import make_vec_env
from evopop.rollouts.collect import Collector, collect
from evopop.seeding import torch_generator

SPECS = [
    NetSpec(cell="lstm", hidden_size=16, head=(16,)),
    NetSpec(cell="lstm", hidden_size=16, head=(16,), shared_encoder=True, num_layers=2),
    NetSpec(cell="gru", hidden_size=16, head=(16,)),
    NetSpec(cell="gru", hidden_size=16, head=(), shared_encoder=True),
    NetSpec(cell="none", head=(16, 16)),
    NetSpec(cell="lstm", hidden_size=16, head=(16,), sde=True),
]


def _rollout(make_agent, env_id, spec, steps, num_envs=3, max_seq_len=8, collects=1):
    envs = make_vec_env(env_id, num_envs, seed=0)
    agent = make_agent(envs, spec=spec, learn_step=steps, max_seq_len=max_seq_len, batch_size=64)
    col = Collector.start(agent, envs, seed=0)
    gen = torch_generator(0)
    bufs = [collect(agent, col, steps, gen) for _ in range(collects)]
    envs.close()
    return agent, bufs


@pytest.mark.parametrize("spec", SPECS,
                         ids=lambda s: f"{s.cell.value}-shared{s.shared_encoder}-sde{s.sde}")
@pytest.mark.parametrize("env_id", ["CartPoleNoVel-v1", "PendulumNoVel-v1"])
def test_recomputed_log_probs_equal_stored(make_agent, env_id, spec):
    steps = 120 if env_id.startswith("CartPole") else 260  # Pendulum truncates at 200
    agent, (buf,) = _rollout(make_agent, env_id, spec, steps)
    # episode boundaries inside the rollout, and episodes longer than max_seq_len
    assert buf.episode_start[1:].any()
    assert split_sequences(buf.episode_start, 8).count > (buf.episode_start.sum() + 3)
    if env_id.startswith("Pendulum"):
        assert buf.truncated.any()
    recomputed = recompute_log_probs(agent, buf)
    np.testing.assert_allclose(recomputed, buf.log_probs, atol=1e-5, rtol=0)
    ratio = np.exp(recomputed - buf.log_probs)
    assert np.abs(ratio - 1.0).max() < 1e-5


def test_first_minibatch_of_update_has_unit_ratio(make_agent):
    agent, (buf,) = _rollout(make_agent, "CartPoleNoVel-v1", SPECS[0], 100)
    p = agent.params
    seqs = split_sequences(buf.episode_start, p.max_seq_len)
    data = FlatBatch.from_buffer(buf, p.gamma, p.gae_lambda, seqs)
    _, stats = _minibatch_loss(agent, data, seqs, np.arange(seqs.count), p.clip_coef)
    assert stats["approx_kl"] < 1e-9
    assert stats["clip_frac"] == 0.0


def test_flat_rows_hold_every_step_field_env_major(make_agent):
    """One gather serves a minibatch: row n * T + t holds env n's step t, every field."""
    agent, (buf,) = _rollout(make_agent, "PendulumNoVel-v1", SPECS[0], 40)
    p = agent.params
    data = FlatBatch.from_buffer(buf, p.gamma, p.gae_lambda,
                                 split_sequences(buf.episode_start, p.max_seq_len))
    adv, ret = compute_gae(buf.rewards, buf.values, next_values(buf),
                           buf.terminated | buf.truncated, p.gamma, p.gae_lambda)
    index = torch.tensor([[0, 2 * 40 + 7], [39, 40 + 11]])  # (env 0, 0), (2, 7); (0, 39), (1, 11)
    got = data.take(index)
    for (i, j), (n, t) in zip([(0, 0), (0, 1), (1, 0), (1, 1)],
                              [(0, 0), (2, 7), (0, 39), (1, 11)], strict=True):
        expected = [buf.obs[t, n], buf.actions[t, n], buf.log_probs[t, n], buf.values[t, n],
                    adv[t, n], ret[t, n]]
        fields = [got.obs, got.actions, got.log_probs, got.values, got.advantages, got.returns]
        for field, value in zip(fields, expected, strict=True):
            assert np.array_equal(field[i, j].numpy(), value)
    assert data.every().obs.shape == (3 * 40, buf.obs.shape[-1])


@pytest.mark.parametrize("spec", SPECS[:3], ids=["lstm", "lstm-shared-2layer", "gru"])
def test_hidden_state_resets_exactly_at_episode_starts(make_agent, spec):
    agent, bufs = _rollout(make_agent, "CartPoleNoVel-v1", spec, 60, collects=2)
    states = torch.cat([b.states for b in bufs])  # [T, C, layers, N, H]
    obs = np.concatenate([b.obs for b in bufs])
    starts = np.concatenate([b.episode_start for b in bufs])
    assert starts[1:].any() and starts[0].all()
    norms = states.abs().flatten(1, 2).sum(dim=(1, 3))  # [T, N]
    assert (norms[torch.from_numpy(starts)] == 0).all()
    assert (norms[torch.from_numpy(~starts)] > 0).all()
    with torch.no_grad():  # carried state = the net's output state of the previous step
        for t in range(len(obs) - 1):
            _, _, new = agent.net(torch.from_numpy(obs[t])[None], states[t])
            carry = ~starts[t + 1]
            torch.testing.assert_close(new[:, :, carry], states[t + 1][:, :, carry])


def test_update_moves_weights_and_reports_finite_stats(make_agent):
    agent, (buf,) = _rollout(make_agent, "CartPoleNoVel-v1", SPECS[0], 64)
    before = [p.detach().clone() for p in agent.net.parameters()]
    stats = ppo_update(agent, buf, np.random.default_rng(0))
    assert stats.finite and stats.grad_steps == agent.params.update_epochs * 3
    changed = [not torch.equal(a, b) for a, b in zip(before, agent.net.parameters(), strict=True)]
    assert all(changed)


def test_target_kl_stops_early(make_agent):
    envs = make_vec_env("CartPoleNoVel-v1", 2, seed=0)
    agent = make_agent(envs, learn_step=64, batch_size=16, update_epochs=30, lr=0.05,
                       target_kl=1e-4)
    buf = collect(agent, Collector.start(agent, envs, seed=0), 64, torch_generator(0))
    stats = ppo_update(agent, buf, np.random.default_rng(0))
    assert stats.early_stop
    assert 0 < stats.grad_steps < 30 * 8


def test_same_seed_gives_same_rollout_and_update(make_agent):
    results = []
    for _ in range(2):
        agent, (buf,) = _rollout(make_agent, "PendulumNoVel-v1", SPECS[0], 40)
        ppo_update(agent, buf, np.random.default_rng(3))
        results.append((buf.actions.copy(), [p.detach().clone() for p in agent.net.parameters()]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.equal(a, b)


def test_sde_noise_is_redrawn_every_freq_steps_and_at_each_rollout_start(make_agent, monkeypatch):
    envs = make_vec_env("PendulumNoVel-v1", 2, seed=0)
    agent = make_agent(envs, spec=NetSpec(hidden_size=8, head=(8,), sde=True), sde_sample_freq=4)
    draws = []
    real = agent.head.sde_noise

    def counting(n, log_std, generator):
        draws.append(log_std.detach().clone())
        return real(n, log_std, generator)

    monkeypatch.setattr(agent.head, "sde_noise", counting)
    col, gen = Collector.start(agent, envs, seed=0), torch_generator(0)
    buf = collect(agent, col, 6, gen)  # draws at t = 0 and 4
    ppo_update(agent, buf, np.random.default_rng(0))
    collect(agent, col, 6, gen)  # the update moved log_std: a fresh draw at t = 0
    assert len(draws) == 4
    assert not torch.equal(draws[1], draws[2])
