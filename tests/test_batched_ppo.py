"""The batched update equals `ppo_update` run member by member with the same rngs."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.agents.agent import ADAM_EPS
from evopop.agents.ppo import ppo_update
from evopop.batched import batched_ppo_update, recompute_log_probs, stack, unstack
from evopop.batched.adam import StackedAdam, clip_grad_norms
from evopop.envs import make_vec_env
from evopop.rollouts.collect import Collector, collect
from evopop.rollouts.shared import SharedRollouts
from evopop.seeding import torch_generator

ATOL = 1e-5
# Float and structural hyperparameters all differ; member 2 stops early on target KL.
MEMBER_PARAMS = [
    dict(lr=1e-3, clip_coef=0.2, ent_coef=0.0, learn_step=48, batch_size=64, update_epochs=2,
         max_seq_len=8, gamma=0.99, gae_lambda=0.95),
    dict(lr=3e-3, clip_coef=0.1, ent_coef=0.01, learn_step=64, batch_size=96, update_epochs=3,
         max_seq_len=16, gamma=0.9, gae_lambda=0.9, vf_clip=0.2, max_grad_norm=0.3,
         anneal=True, norm_adv=False),
    dict(lr=2e-2, clip_coef=0.3, ent_coef=0.05, learn_step=40, batch_size=48, update_epochs=3,
         max_seq_len=4, vf_coef=1.0, target_kl=1e-4),
]
CASES = [
    ("CartPoleNoVel-v1", NetSpec(cell="lstm", hidden_size=16, head=(16,))),
    ("CartPoleNoVel-v1", NetSpec(cell="gru", hidden_size=16, head=(16,), num_layers=2,
                                 shared_encoder=True)),
    ("PendulumNoVel-v1", NetSpec(cell="none", head=(16, 16), activation="relu")),
    ("PendulumNoVel-v1", NetSpec(cell="lstm", hidden_size=16, head=(16,), sde=True)),
]
REMAINING = [1.0, 0.7, 0.9]


def _members_with_rollouts(env_id, spec):
    agents, bufs = [], []
    for i, params in enumerate(MEMBER_PARAMS):
        envs = make_vec_env(env_id, 3, seed=10 * i)
        agent = Agent(envs.single_observation_space, envs.single_action_space, spec,
                      PPOParams(**params), seed=i)
        col = Collector.start(agent, envs, seed=10 * i)
        bufs.append(collect(agent, col, agent.params.learn_step, torch_generator(i)))
        envs.close()
        agents.append(agent)
    return agents, bufs


def _rngs():
    return [np.random.default_rng(100 + i) for i in range(len(MEMBER_PARAMS))]


def _assert_same_member(batched: Agent, reference: Agent) -> float:
    """Weights and Adam state equal to tolerance; returns the largest difference seen."""
    worst = 0.0
    for a, b in zip(batched.net.parameters(), reference.net.parameters(), strict=True):
        worst = max(worst, float((a - b).detach().abs().max()))
        sa, sb = batched.optimizer.state[a], reference.optimizer.state[b]
        assert float(sa["step"]) == float(sb["step"])
        for slot in ("exp_avg", "exp_avg_sq"):
            worst = max(worst, float((sa[slot] - sb[slot]).abs().max()))
    assert worst <= ATOL
    return worst


def _assert_same_stats(got, want):
    assert (got.grad_steps, got.early_stop, got.finite) == (
        want.grad_steps, want.early_stop, want.finite)
    for field in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac",
                  "explained_variance"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), abs=ATOL, rel=1e-4,
                                                           nan_ok=True)


@pytest.mark.parametrize("env_id,spec", CASES,
                         ids=[f"{e.split('NoVel')[0]}-{s.cell.value}" for e, s in CASES])
def test_batched_update_equals_member_by_member(env_id, spec):
    agents, bufs = _members_with_rollouts(env_id, spec)
    reference = copy.deepcopy(agents)
    rngs, ref_rngs = _rngs(), _rngs()
    for _ in range(2):  # the second update starts from non-empty Adam state
        pop = stack(agents)
        stats = batched_ppo_update(pop, agents, bufs, rngs, REMAINING)
        unstack(pop, agents)
        ref_stats = [ppo_update(a, b, r, rem)
                     for a, b, r, rem in zip(reference, bufs, ref_rngs, REMAINING, strict=True)]
        for got, want in zip(stats, ref_stats, strict=True):
            _assert_same_stats(got, want)
        for a, ref in zip(agents, reference, strict=True):
            _assert_same_member(a, ref)
        for r, ref in zip(rngs, ref_rngs, strict=True):
            assert r.bit_generator.state == ref.bit_generator.state
    assert ref_stats[2].early_stop and not ref_stats[0].early_stop
    assert len({s.grad_steps for s in ref_stats}) == 3  # schedules of different lengths


def test_batched_recomputed_log_probs_equal_collected():
    agents, bufs = _members_with_rollouts(*CASES[0])
    for log_probs, buf in zip(recompute_log_probs(stack(agents), agents, bufs), bufs,
                              strict=True):
        assert np.abs(np.exp(log_probs - buf.log_probs) - 1.0).max() < 1e-5


@pytest.mark.parametrize("env_id,spec", [CASES[0], CASES[1], CASES[3]],
                         ids=["lstm", "gru2-shared", "lstm-sde"])
def test_group_collections_log_probs_are_what_the_batched_update_recomputes(env_id, spec):
    """Batched mode end to end: log-probs collected by the group's batched policy step (the C
    steps on prepared weights, where built) equal the batched update's recompute over whole
    sequences, ratio 1 +- 1e-5."""
    size, envs = 3, 3
    agents = [Agent(*_spaces(env_id), spec, PPOParams(learn_step=48, max_seq_len=8), seed=i)
              for i in range(size)]
    shared = SharedRollouts(make_vec_env(env_id, envs * size), size)
    shared.start([(10 * i, i) for i in range(size)])
    bufs = shared.collect(stack(agents), agents, [True] * size, 48)
    shared.close()
    for log_probs, buf in zip(recompute_log_probs(stack(agents), agents, bufs), bufs,
                              strict=True):
        assert np.abs(np.exp(log_probs - buf.log_probs) - 1.0).max() < 1e-5


def _spaces(env_id):
    envs = make_vec_env(env_id, 1)
    spaces = envs.single_observation_space, envs.single_action_space
    envs.close()
    return spaces


def test_stacked_adam_and_clipping_equal_torch_with_skipped_members():
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (4,), (2, 2, 2)]
    members = [[nn.Parameter(torch.randn(s, generator=gen)) for s in shapes] for _ in range(3)]
    # members 1 and 2 share an lr: one fused call steps both rows, each with its own step count
    lrs, max_norms = np.array([1e-3, 1e-2, 1e-2]), [0.5, 0.1, 100.0]
    optims = [torch.optim.Adam(m, lr=lr, eps=ADAM_EPS) for m, lr in zip(members, lrs, strict=True)]
    flat = torch.stack([torch.cat([p.detach().flatten() for p in m]) for m in members])  # [P, D]
    adam = StackedAdam.zeros(flat, (0.9, 0.999), ADAM_EPS)
    active_by_step = [[True, True, True], [True, False, True], [False, False, True],
                      [True, True, False]]
    for active in active_by_step:
        grads = [torch.randn(3, *s, generator=gen) for s in shapes]
        grad = torch.cat([g.flatten(1) for g in grads], dim=1)
        norms = clip_grad_norms(grad, torch.tensor(max_norms))
        adam.step(flat, grad, lrs, np.array(active))
        for p, (params, opt) in enumerate(zip(members, optims, strict=True)):
            if active[p]:
                for param, g in zip(params, grads, strict=True):
                    param.grad = g[p].clone()
                want = nn.utils.clip_grad_norm_(params, max_norms[p])
                torch.testing.assert_close(norms[p], want)
                opt.step()
    for p, (params, opt) in enumerate(zip(members, optims, strict=True)):
        torch.testing.assert_close(flat[p], torch.cat([q.detach().flatten() for q in params]),
                                   atol=1e-7, rtol=0)
        want_sq = torch.cat([opt.state[q]["exp_avg_sq"].flatten() for q in params])
        torch.testing.assert_close(adam.exp_avg_sq[p], want_sq)
        assert adam.steps[p] == sum(a[p] for a in active_by_step)


def test_stacked_parameters_are_views_of_one_buffer_in_member_order():
    agents, _ = _members_with_rollouts(*CASES[1])
    pop = stack(agents)
    flat = pop.net.flat
    assert flat.shape == (len(agents), sum(
        p.numel() for p in agents[0].net.parameters()))
    for p, agent in enumerate(agents):
        torch.testing.assert_close(flat[p], torch.cat(
            [q.detach().flatten() for q in agent.net.parameters()]), atol=0, rtol=0)
    with torch.no_grad():
        flat.add_(1.0)  # what Adam does: every parameter view moves with the buffer
    for name, param in pop.net.params.items():
        assert param.is_leaf and param.requires_grad
        want = dict(agents[0].net.named_parameters())[name].detach() + 1.0
        torch.testing.assert_close(param[0].detach(), want, atol=0, rtol=0)
