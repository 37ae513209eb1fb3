"""Rollout storage, GAE, and the split of a rollout into padded recurrent sequences.

Arrays are time-major `[T, N, ...]` during collection. For the update they are flattened
env-major (flat index `n * T + t`), so that one env's steps are contiguous and a sequence is a
run of consecutive flat indices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch


@dataclass
class RolloutBuffer:
    """One rollout of T steps on N envs.

    `terminated` and `truncated` are kept apart: a terminated step's next value is 0, a truncated
    step's is the value of its final observation (`bootstrap_values`). `episode_start[t]` is true
    when the observation at t is the first of an episode, i.e. the recurrent state was reset before
    step t. `states[t]` is the recurrent state fed to step t (after that reset).
    """

    obs: np.ndarray  # [T, N, obs_dim] float32, normalised as the policy saw it
    actions: np.ndarray  # [T, N, action_dim] float32 (category indices for discrete)
    log_probs: np.ndarray  # [T, N] float32
    values: np.ndarray  # [T, N] float32
    rewards: np.ndarray  # [T, N] float32, scaled as used for training
    terminated: np.ndarray  # [T, N] bool
    truncated: np.ndarray  # [T, N] bool
    episode_start: np.ndarray  # [T, N] bool
    bootstrap_values: np.ndarray  # [T, N] float32, V(final obs) where truncated
    states: torch.Tensor  # [T, C, layers, N, H]
    last_values: np.ndarray  # [N] float32, V(obs after the last step)

    ENV_AXES: ClassVar[dict[str, int]] = {"states": 3, "last_values": 0}
    """Each field's env axis where it is not 1 (joining and splitting rollouts by env)."""

    @classmethod
    def allocate(
        cls, steps: int, num_envs: int, obs_dim: int, action_dim: int, state_shape: tuple[int, ...]
    ) -> RolloutBuffer:
        t, n = steps, num_envs
        return cls(
            obs=np.zeros((t, n, obs_dim), np.float32),
            actions=np.zeros((t, n, action_dim), np.float32),
            log_probs=np.zeros((t, n), np.float32),
            values=np.zeros((t, n), np.float32),
            rewards=np.zeros((t, n), np.float32),
            terminated=np.zeros((t, n), bool),
            truncated=np.zeros((t, n), bool),
            episode_start=np.zeros((t, n), bool),
            bootstrap_values=np.zeros((t, n), np.float32),
            states=torch.zeros((t, *state_shape)),
            last_values=np.zeros(n, np.float32),
        )

    @property
    def steps(self) -> int:
        return self.obs.shape[0]

    @property
    def num_envs(self) -> int:
        return self.obs.shape[1]

    def envs(self, start: int, stop: int) -> RolloutBuffer:
        """The rollout of env copies `start` to `stop - 1` alone, as copies of its own."""
        parts = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            index = (slice(None),) * self.ENV_AXES.get(f.name, 1) + (slice(start, stop),)
            part = value[index]
            parts[f.name] = part.clone() if isinstance(part, torch.Tensor) else part.copy()
        return RolloutBuffer(**parts)


def next_values(buf: RolloutBuffer) -> np.ndarray:
    """V(s_{t+1}) as GAE needs it: 0 after termination, V(final obs) after truncation."""
    nxt = np.empty_like(buf.values)
    nxt[:-1] = buf.values[1:]
    nxt[-1] = buf.last_values
    nxt = np.where(buf.truncated, buf.bootstrap_values, nxt)
    return np.where(buf.terminated, 0.0, nxt).astype(np.float32)


def compute_gae(
    rewards: np.ndarray, values: np.ndarray, next_vals: np.ndarray, dones: np.ndarray,
    gamma: float, lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation (Schulman et al. 2015) -> (advantages, returns), `[T, N]`.

    `dones[t]` ends the episode after step t, so the advantage never flows back across it; the
    bootstrap for step t is `next_vals[t]`, which already encodes termination vs truncation.
    """
    adv = np.zeros_like(values, dtype=np.float32)
    running = np.zeros(values.shape[1], np.float32)
    carry = gamma * lam * (1.0 - dones.astype(np.float32))
    deltas = rewards + gamma * next_vals - values
    for t in range(values.shape[0] - 1, -1, -1):
        running = deltas[t] + carry[t] * running
        adv[t] = running
    return adv, adv + values


@dataclass
class Sequences:
    """Padded sequences over env-major flat indices: `index[l, s]` is step l of sequence s."""

    index: np.ndarray  # [L, S] int64 (0 where padded)
    mask: np.ndarray  # [L, S] bool
    lengths: np.ndarray  # [S] int64

    @property
    def count(self) -> int:
        return self.index.shape[1]


def split_sequences(episode_start: np.ndarray, max_seq_len: int) -> Sequences:
    """Cuts each env's steps at episode starts and every `max_seq_len` steps.

    A sequence never spans an episode start, so the recurrent module can run it in one call from
    the state stored at its first step.
    """
    steps, num_envs = episode_start.shape
    starts = episode_start.T.copy()  # [N, T]
    starts[:, 0] = True
    t = np.arange(steps)
    last_start = np.maximum.accumulate(np.where(starts, t, 0), axis=1)
    pos = (t - last_start) % max_seq_len  # [N, T] position inside its sequence
    seq_id = np.cumsum((pos == 0).reshape(-1)) - 1  # [N*T]
    count = int(seq_id[-1]) + 1
    length = min(max_seq_len, steps)
    index = np.zeros((length, count), np.int64)
    mask = np.zeros((length, count), bool)
    index[pos.reshape(-1), seq_id] = np.arange(steps * num_envs)
    mask[pos.reshape(-1), seq_id] = True
    return Sequences(index, mask, mask.sum(axis=0))


def minibatches(seqs: Sequences, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffles sequences into groups of about `batch_size` valid transitions each.

    Grouping by transition count (not by sequence count) keeps the minibatch size a property of the
    hyperparameters alone, whatever the number of envs or the episode lengths. A remainder of less
    than half a batch joins the last group instead of taking a noisy gradient step of its own.
    """
    groups: list[np.ndarray] = []
    current: list[int] = []
    filled = 0
    for s in rng.permutation(seqs.count):
        current.append(int(s))
        filled += int(seqs.lengths[s])
        if filled >= batch_size:
            groups.append(np.asarray(current))
            current, filled = [], 0
    if current and groups and filled < batch_size // 2:
        groups[-1] = np.concatenate([groups[-1], np.asarray(current)])  # no tiny last step
    elif current:
        groups.append(np.asarray(current))
    return groups
