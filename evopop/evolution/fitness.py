"""What a member's fitness is, and the seeds of the fresh episodes a run's elite is reported on.

`eval`: the mean return of `eval_episodes` deterministic evaluation episodes (the same seeds for
every member). `train`: the mean return of the member's last `TRAIN_WINDOW` training episodes
that ended in this generation, as PBT does: no extra env steps, but a stochastic policy that was
still learning. A member that finished no training episode in the generation (episodes longer
than a generation) is evaluated instead, as under `eval`. Light: no torch, no gymnasium.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum


class FitnessMode(str, Enum):
    """The selection signal: fresh evaluation episodes or recent training episodes."""

    EVAL = "eval"
    TRAIN = "train"


TRAIN_WINDOW = 20
"""Training episodes a `train` fitness averages (the most recent of the generation): the same
window as every member's logged `train_return`, so a `train` fitness is that number."""


def train_fitness(returns: Sequence[float]) -> float | None:
    """Mean return of the last `TRAIN_WINDOW` episodes (all, if fewer); None if none ended."""
    recent = returns[-TRAIN_WINDOW:]
    return sum(recent) / len(recent) if recent else None


def disjoint_start(start: int, count: int, taken: Iterable[tuple[int, int]]) -> int:
    """The first seed >= `start` whose `count` consecutive seeds avoid every `[low, high)` range
    of `taken` (e.g. every generation's evaluation seeds): fresh episodes are never episodes
    that selection has seen."""
    ranges = sorted(taken)
    moved = True
    while moved:
        moved = False
        for low, high in ranges:
            if start < high and low < start + count:
                start, moved = high, True
    return start
