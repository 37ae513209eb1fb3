"""Minibatch schedules of P members, padded into rounds that run as one batched computation.

Each member's sequence split and minibatch composition come from its own rollout and its own
shuffling rng, exactly as in `ppo_update`. Round r holds every member's r-th minibatch, padded
to the longest sequence and the largest sequence count of the round and masked; a member whose
schedule has ended (fewer or smaller epochs, target-KL stop) is absent from the round.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer, Sequences, minibatches, split_sequences
from evopop.agents.ppo import FlatBatch


@dataclass
class PopulationBatch:
    """Every member's flat rollout, concatenated (member p's rows start at `offsets[p]`)."""

    data: FlatBatch  # rows (and sequence start states) of all members
    members: list[FlatBatch]
    seqs: list[Sequences]
    offsets: np.ndarray  # [P] int64: member p's first row
    seq_offsets: np.ndarray  # [P] int64: member p's first sequence

    @classmethod
    def build(cls, agents: list[Agent], bufs: list[RolloutBuffer]) -> PopulationBatch:
        """GAE and sequence splits per member, as `ppo_update` computes them."""
        seqs = [split_sequences(b.episode_start, a.params.max_seq_len)
                for a, b in zip(agents, bufs, strict=True)]
        members = [FlatBatch.from_buffer(b, a.params.gamma, a.params.gae_lambda, s)
                   for a, b, s in zip(agents, bufs, seqs, strict=True)]
        data = FlatBatch(torch.cat([m.rows for m in members]), members[0].obs_dim,
                         torch.cat([m.states for m in members]))
        return cls(data, members, seqs, _starts([m.rows.shape[0] for m in members]),
                   _starts([s.count for s in seqs]))


def _starts(sizes: list[int]) -> np.ndarray:
    """Where each of consecutive blocks of `sizes` starts."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


class MinibatchStream:
    """One member's minibatches in `ppo_update`'s order, each epoch shuffled only when it is
    reached, so the member's rng advances exactly as it would on its own (also on early stop)."""

    def __init__(self, seqs: Sequences, batch_size: int, epochs: int,
                 rng: np.random.Generator) -> None:
        self._seqs, self._batch_size, self._rng = seqs, batch_size, rng
        self._epochs_left = epochs
        self._pending: deque[np.ndarray] = deque()

    def next(self) -> np.ndarray | None:
        """The next minibatch (sequence ids), or None when the schedule is over."""
        if not self._pending and self._epochs_left:
            self._pending.extend(minibatches(self._seqs, self._batch_size, self._rng))
            self._epochs_left -= 1
        return self._pending.popleft() if self._pending else None

    def stop(self) -> None:
        self._pending.clear()
        self._epochs_left = 0


@dataclass
class Round:
    """One minibatch per member, padded: index into the concatenated rows, and validity."""

    index: torch.Tensor  # [P, L, S] int64 (0 where padded)
    first: torch.Tensor  # [P, S] int64: the sequences, into `data.states` (0 where padded)
    mask: torch.Tensor  # [P, L, S] float32
    present: np.ndarray  # [P] bool: the member has a minibatch in this round


def build_round(batch: PopulationBatch, chosen: list[np.ndarray | None]) -> Round:
    """Pads each member's chosen sequences to the round's longest length and largest count."""
    lengths = [0 if c is None else int(s.lengths[c].max())
               for s, c in zip(batch.seqs, chosen, strict=True)]
    counts = [0 if c is None else len(c) for c in chosen]
    shape = (len(chosen), max(lengths), max(counts))
    index = np.zeros(shape, np.int64)
    first = np.zeros((shape[0], shape[2]), np.int64)
    mask = np.zeros(shape, bool)
    for p, c in enumerate(chosen):
        if c is not None:
            seqs, length = batch.seqs[p], lengths[p]
            index[p, :length, : len(c)] = seqs.index[:length, c] + batch.offsets[p]
            first[p, : len(c)] = c + batch.seq_offsets[p]
            mask[p, :length, : len(c)] = seqs.mask[:length, c]
    present = np.array([c is not None for c in chosen])
    return Round(torch.from_numpy(index), torch.from_numpy(first),
                 torch.from_numpy(mask).to(torch.float32), present)
