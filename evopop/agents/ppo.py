"""PPO update with truncated backpropagation through time (Schulman et al. 2017).

Each minibatch is a set of whole sequences run through the recurrent module in one call from their
stored initial states; padding is masked out of every loss and statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evopop.agents.agent import Agent
from evopop.agents.buffer import (
    RolloutBuffer,
    Sequences,
    compute_gae,
    minibatches,
    next_values,
    split_sequences,
)
from evopop.agents.optim import clip_grad_norm


@dataclass
class UpdateStats:
    """Diagnostics of one update, averaged over the minibatches that ran."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_frac: float
    explained_variance: float
    grad_steps: int
    early_stop: bool
    finite: bool


@dataclass
class Steps:
    """Per-step fields of some rollout rows: views of one gathered block."""

    obs: torch.Tensor  # [..., obs_dim]
    actions: torch.Tensor  # [..., action_dim]
    log_probs: torch.Tensor  # [...]
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


SCALAR_FIELDS = ("log_probs", "values", "advantages", "returns")
"""`Steps`' one-number-per-step fields, in their order: the last columns of `FlatBatch.rows`."""


@dataclass
class FlatBatch:
    """Rollout rows flattened env-major (`n * T + t`), every per-step field side by side in
    one block (`rows`: obs, actions, log-prob, value, advantage, return), so that a minibatch
    gathers them in one index op instead of six; and the recurrent state each sequence starts
    from, by sequence id."""

    rows: torch.Tensor  # [N*T, obs_dim + action_dim + len(SCALAR_FIELDS)] float32
    obs_dim: int
    states: torch.Tensor  # [sequences, C, layers, H]: the state each sequence starts from

    @classmethod
    def from_buffer(cls, buf: RolloutBuffer, gamma: float, lam: float, seqs: Sequences,
                    device: torch.device | None = None) -> FlatBatch:
        """GAE on the host, then the flattened rollout moved to `device` in one go (the buffer
        itself stays on the host). Of the recurrent states only the sequences' first are kept,
        by sequence id: the update starts each sequence from its stored state and carries it
        on itself, so copying every step's state (16x the rows at W1's sequence length) is
        wasted."""
        dones = buf.terminated | buf.truncated
        adv, ret = compute_gae(buf.rewards, buf.values, next_values(buf), dones, gamma, lam)
        by_name = {"log_probs": buf.log_probs, "values": buf.values, "advantages": adv,
                   "returns": ret}
        scalars = np.stack([by_name[name] for name in SCALAR_FIELDS], axis=-1)
        rows = np.concatenate([buf.obs, buf.actions, scalars], axis=-1, dtype=np.float32)
        rows = np.ascontiguousarray(rows.swapaxes(0, 1))  # [T, N, F] -> [N, T, F]
        env, step = np.divmod(seqs.index[0], buf.steps)  # first rows are env-major: n * T + t
        # [T, C, layers, N, H] at (t, n) pairs -> [sequences, C, layers, H]
        states = buf.states[torch.from_numpy(step), :, :, torch.from_numpy(env)].to(device)
        flat = torch.from_numpy(rows.reshape(-1, rows.shape[-1])).to(device)
        return cls(flat, buf.obs.shape[-1], states)

    def take(self, index: torch.Tensor) -> Steps:
        """The rows at `index` (any shape), one gather."""
        return self._steps(self.rows[index])

    def every(self) -> Steps:
        """All rows, in order."""
        return self._steps(self.rows)

    def _steps(self, block: torch.Tensor) -> Steps:
        o, a = self.obs_dim, block.shape[-1] - len(SCALAR_FIELDS)
        scalars = dict(zip(SCALAR_FIELDS, block[..., a:].unbind(-1), strict=True))
        return Steps(block[..., :o], block[..., o:a], **scalars)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum()


@dataclass
class Evaluated:
    """Stored steps of some sequences and the net's outputs on them (the same shape each);
    the batched update's rounds are these with a member axis in front."""

    stored: Steps
    log_probs: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor


def evaluate_sequences(
    agent: Agent, data: FlatBatch, seqs: Sequences, chosen: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor, Evaluated]:
    """Runs the chosen sequences from their stored states: (flat index `[L, S]`, mask
    `[L, S]`, what they gave, all `[L, S]`)."""
    length = int(seqs.lengths[chosen].max())
    index = agent.as_tensor(seqs.index[:length, chosen])
    mask = agent.as_tensor(seqs.mask[:length, chosen]).to(torch.float32)
    stored = data.take(index)
    # [S, C, layers, H] -> [C, layers, S, H]
    state = data.states[agent.as_tensor(chosen)].permute(1, 2, 0, 3)
    out, values, _ = agent.net(stored.obs.contiguous(), state)
    log_std = agent.net.log_std
    log_probs = agent.head.log_prob(out, log_std, stored.actions)
    return index, mask, Evaluated(stored, log_probs, agent.head.entropy(out, log_std), values)


@torch.no_grad()
def recompute_log_probs(agent: Agent, buf: RolloutBuffer) -> np.ndarray:
    """Log-probs `[T, N]` of the stored actions as the update sees them (before any step)."""
    p = agent.params
    seqs = split_sequences(buf.episode_start, p.max_seq_len)
    data = FlatBatch.from_buffer(buf, p.gamma, p.gae_lambda, seqs, agent.device)
    index, mask, ev = evaluate_sequences(agent, data, seqs, np.arange(seqs.count))
    flat = np.zeros(buf.steps * buf.num_envs, np.float32)
    valid = mask.bool()
    flat[index[valid].cpu().numpy()] = ev.log_probs[valid].cpu().numpy()
    return flat.reshape(buf.num_envs, buf.steps).T


def _minibatch_loss(
    agent: Agent, data: FlatBatch, seqs: Sequences, chosen: np.ndarray, clip: float
) -> tuple[torch.Tensor, dict[str, float]]:
    p = agent.params
    _, mask, ev = evaluate_sequences(agent, data, seqs, chosen)
    log_probs, entropy, values = ev.log_probs, ev.entropy, ev.values
    old_log_probs, old_values = ev.stored.log_probs, ev.stored.values
    adv, ret = ev.stored.advantages, ev.stored.returns
    if p.norm_adv:
        mean = _masked_mean(adv, mask)
        std = _masked_mean((adv - mean) ** 2, mask).sqrt()
        adv = (adv - mean) / (std + 1e-8)
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip)
    policy_loss = _masked_mean(torch.max(-adv * ratio, -adv * clipped), mask)
    value_err = (values - ret) ** 2
    if p.vf_clip is not None:
        v_clipped = old_values + (values - old_values).clamp(-p.vf_clip, p.vf_clip)
        value_err = torch.max(value_err, (v_clipped - ret) ** 2)
    value_loss = 0.5 * _masked_mean(value_err, mask)
    ent = _masked_mean(entropy, mask)
    loss = policy_loss - p.ent_coef * ent + p.vf_coef * value_loss
    with torch.no_grad():
        stats = {
            "policy_loss": float(policy_loss),
            "value_loss": float(value_loss),
            "entropy": float(ent),
            "approx_kl": float(_masked_mean((ratio - 1.0) - log_ratio, mask)),
            "clip_frac": float(_masked_mean(((ratio - 1.0).abs() > clip).float(), mask)),
        }
    return loss, stats


def ppo_update(
    agent: Agent, buf: RolloutBuffer, rng: np.random.Generator, remaining: float = 1.0
) -> UpdateStats:
    """`update_epochs` passes over the rollout in shuffled minibatches of whole sequences.

    `remaining` (1 -> 0) is the fraction of the budget left; it scales lr and clip_coef when the
    agent's params ask for annealing.
    """
    p = agent.params
    agent.apply_lr(remaining)
    clip = p.clip_coef * (remaining if p.anneal else 1.0)
    seqs = split_sequences(buf.episode_start, p.max_seq_len)
    data = FlatBatch.from_buffer(buf, p.gamma, p.gae_lambda, seqs, agent.device)
    history: list[dict[str, float]] = []
    early_stop, finite = False, True
    for _ in range(p.update_epochs):
        for chosen in minibatches(seqs, p.batch_size, rng):
            loss, stats = _minibatch_loss(agent, data, seqs, chosen, clip)
            if p.target_kl is not None and stats["approx_kl"] > 1.5 * p.target_kl:
                early_stop = True
                break
            if not torch.isfinite(loss):
                finite = False
                break
            agent.optimizer.zero_grad()
            loss.backward()
            clip_grad_norm(agent.net.parameters(), p.max_grad_norm)
            agent.optimizer.step()
            history.append(stats)
        if early_stop or not finite:
            break
    return summarise_updates(history, data, early_stop, finite)


def summarise_updates(
    history: list[dict[str, float]], data: FlatBatch, early_stop: bool, finite: bool
) -> UpdateStats:
    keys = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")
    means = {k: float(np.mean([h[k] for h in history])) if history else float("nan") for k in keys}
    rows = data.every()
    var_ret = float(rows.returns.var())
    explained = 1.0 - float((rows.returns - rows.values).var()) / var_ret if var_ret > 0 else 0.0
    return UpdateStats(**means, explained_variance=explained, grad_steps=len(history),
                       early_stop=early_stop, finite=finite)
