"""Batched PPO update: one forward and one backward per round for all P members.

Member p's result equals `evopop.agents.ppo.ppo_update` run on it alone with the same rng: the
same minibatches (its own split and shuffles), the same losses (per-member masked means and
coefficients), per-member gradient clipping, and an Adam step only for the members whose
minibatch ran (not stopped by target KL, loss finite).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.ppo import Evaluated, FlatBatch, UpdateStats, summarise_updates
from evopop.batched.adam import clip_grad_norms
from evopop.batched.hparams import MemberHParams
from evopop.batched.population import StackedPopulation
from evopop.batched.schedule import MinibatchStream, PopulationBatch, Round, build_round

Tensor = torch.Tensor
_STAT_KEYS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")


def evaluate_round(pop: StackedPopulation, data: FlatBatch, rnd: Round) -> Evaluated:
    """Runs every member's chosen sequences from their stored initial states."""
    # [P, S, C, layers, H] -> [C, layers, P, S, H]
    state = data.states[rnd.first].permute(2, 3, 0, 1, 4)
    stored = data.take(rnd.index)
    out, values, _ = pop.net.forward(stored.obs.contiguous(), state)
    log_std = pop.net.log_std_for(out)
    log_probs = pop.head.log_prob(out, log_std, stored.actions)
    return Evaluated(stored, log_probs, pop.head.entropy(out, log_std), values)


def _masked_mean(x: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    """Per-member mean over the valid steps: `[P, L, S]` -> `[P, 1, 1]`."""
    return (x * mask).sum(dim=(1, 2), keepdim=True) / count


def member_losses(
    pop: StackedPopulation, data: FlatBatch, rnd: Round, hp: MemberHParams
) -> tuple[Tensor, Tensor]:
    """(loss `[P]`, stats `[P, 5]` in `_STAT_KEYS` order): `ppo._minibatch_loss` per member."""
    ev = evaluate_round(pop, data, rnd)
    mask = rnd.mask
    count = mask.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)  # absent members: 0 / 1
    old_log_probs, old_values = ev.stored.log_probs, ev.stored.values
    adv, ret = ev.stored.advantages, ev.stored.returns
    mean = _masked_mean(adv, mask, count)
    std = _masked_mean((adv - mean) ** 2, mask, count).sqrt()
    adv = torch.where(hp.norm_adv, (adv - mean) / (std + 1e-8), adv)
    log_ratio = ev.log_probs - old_log_probs
    ratio = log_ratio.exp()
    clipped = torch.clamp(ratio, hp.clip_low, hp.clip_high)
    policy_loss = _masked_mean(torch.max(-adv * ratio, -adv * clipped), mask, count)
    value_err = (ev.values - ret) ** 2
    v_clipped = old_values + torch.clamp(ev.values - old_values, -hp.vf_clip, hp.vf_clip)
    value_err = torch.where(hp.use_vf_clip, torch.max(value_err, (v_clipped - ret) ** 2),
                            value_err)
    value_loss = 0.5 * _masked_mean(value_err, mask, count)
    ent = _masked_mean(ev.entropy, mask, count)
    loss = policy_loss - hp.ent_coef * ent + hp.vf_coef * value_loss
    with torch.no_grad():
        kl = _masked_mean((ratio - 1.0) - log_ratio, mask, count)
        clip_frac = _masked_mean(((ratio - 1.0).abs() > hp.clip).float(), mask, count)
        stats = torch.cat([policy_loss, value_loss, ent, kl, clip_frac], dim=1)  # [P, 5, 1]
    return loss.view(-1), stats.view(-1, len(_STAT_KEYS))


@dataclass
class MemberProgress:
    """What `ppo_update` tracks per member: stats of the steps taken, and why it stopped."""

    history: list[dict[str, float]]
    early_stop: bool = False
    finite: bool = True


def _decide_steps(
    rnd: Round, loss: Tensor, stats: Tensor, hp: MemberHParams,
    streams: list[MinibatchStream], progress: list[MemberProgress],
) -> np.ndarray:
    """Members that step this round; the others stop as `ppo_update` would (KL, non-finite)."""
    losses, rows = loss.detach().numpy(), stats.numpy()
    step = np.zeros(len(streams), bool)
    for p in np.flatnonzero(rnd.present):
        if rows[p, 3] > 1.5 * hp.target_kl[p]:
            progress[p].early_stop = True
            streams[p].stop()
        elif not np.isfinite(losses[p]):
            progress[p].finite = False
            streams[p].stop()
        else:
            step[p] = True
            progress[p].history.append(dict(zip(_STAT_KEYS, rows[p].tolist(), strict=True)))
    return step


def _optimizer_step(pop: StackedPopulation, loss: Tensor, step: np.ndarray,
                    hp: MemberHParams) -> None:
    # where, not multiply: a skipped member's loss may be non-finite
    total = torch.where(torch.from_numpy(step), loss, torch.zeros_like(loss)).sum()
    grad = pop.gather_grads(torch.autograd.grad(total, pop.param_list))
    clip_grad_norms(grad, hp.max_grad_norm)
    pop.adam.step(pop.net.flat, grad, hp.lr, step)


def batched_ppo_update(
    pop: StackedPopulation, agents: list[Agent], bufs: list[RolloutBuffer],
    rngs: list[np.random.Generator], remaining: float | Sequence[float] = 1.0,
) -> list[UpdateStats]:
    """`ppo_update` for every member at once; `pop` must be `stack(agents)` (write the result
    back with `unstack`). `remaining` is one budget fraction for all or one per member."""
    size = pop.size
    hp = MemberHParams.of(agents, np.broadcast_to(np.asarray(remaining, np.float64), (size,)))
    batch = PopulationBatch.build(agents, bufs)
    streams = [MinibatchStream(s, a.params.batch_size, a.params.update_epochs, rng)
               for s, a, rng in zip(batch.seqs, agents, rngs, strict=True)]
    progress = [MemberProgress([]) for _ in range(size)]
    while True:
        rnd = build_round(batch, [s.next() for s in streams])
        if not rnd.present.any():
            break
        loss, stats = member_losses(pop, batch.data, rnd, hp)
        step = _decide_steps(rnd, loss, stats, hp, streams, progress)
        if step.any():
            _optimizer_step(pop, loss, step, hp)
    return [summarise_updates(pr.history, m, pr.early_stop, pr.finite)
            for pr, m in zip(progress, batch.members, strict=True)]


@torch.no_grad()
def recompute_log_probs(
    pop: StackedPopulation, agents: list[Agent], bufs: list[RolloutBuffer]
) -> list[np.ndarray]:
    """Each member's log-probs `[T, N]` of its stored actions as the batched update sees them."""
    batch = PopulationBatch.build(agents, bufs)
    rnd = build_round(batch, [np.arange(s.count) for s in batch.seqs])
    log_probs = evaluate_round(pop, batch.data, rnd).log_probs
    flat = np.zeros(batch.data.rows.shape[0], np.float32)
    valid = rnd.mask.bool()
    flat[rnd.index[valid].numpy()] = log_probs[valid].numpy()
    return [flat[o : o + b.steps * b.num_envs].reshape(b.num_envs, b.steps).T
            for o, b in zip(batch.offsets, bufs, strict=True)]
