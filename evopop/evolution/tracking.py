"""What a run charts per generation, and the trackers that chart it (wandb, TensorBoard).

One function (`generation_point`) turns a `GenerationRecord` into the scalars every tracker logs,
so the trackers only move numbers and cannot drift apart; `Trackers` feeds each active one the
same point. The scalars:

- `generation`, `elite_fitness`, `best_fitness`, `mean_fitness` (over finite members),
  `steps_per_s`, `diverged_members`;
- `member_<slot>/fitness` and `member_<slot>/<hp>` for each hyperparameter of the hp space;
- `elite_hp/<hp>`: the elite's hyperparameters; `elite/<metric>`: its episode metrics.

A value that is not a finite number (a diverged member's fitness, a metric that applies to no
episode) is left out: a gap in the chart, not a spike. The step is the run's total env steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from evopop.evolution.selection import elite_index
from evopop.records import GenerationRecord, MemberRecord


@dataclass(frozen=True)
class Point:
    """One generation as trackers chart it: scalars by tag at `step` (total env steps)."""

    step: int
    scalars: Mapping[str, float]


class Tracker(Protocol):
    """Somewhere generations are charted; it writes points and adds nothing of its own."""

    def write(self, point: Point) -> None: ...

    def close(self) -> None: ...


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _elite(members: Sequence[MemberRecord]) -> MemberRecord | None:
    """The elite as the loop picks it (fittest, first on ties); None if every member diverged."""
    fitness = [m.fitness for m in members]
    return members[elite_index(fitness)] if any(math.isfinite(f) for f in fitness) else None


def generation_point(record: GenerationRecord, hp_names: Sequence[str]) -> Point:
    """The scalars of one generation (see the module docstring)."""
    fitness = [f for f in (_finite(m.fitness) for m in record.members) if f is not None]
    raw: dict[str, Any] = {
        "generation": record.generation, "elite_fitness": record.elite_fitness,
        "best_fitness": record.best_fitness,
        "mean_fitness": sum(fitness) / len(fitness) if fitness else None,
        "steps_per_s": record.steps_per_s,
        "diverged_members": len(record.members) - len(fitness),
    }
    for slot, member in enumerate(record.members):
        raw[f"member_{slot}/fitness"] = member.fitness
        raw.update({f"member_{slot}/{hp}": member.hparams.get(hp) for hp in hp_names})
    elite = _elite(record.members)
    if elite is not None:
        raw.update({f"elite_hp/{hp}": elite.hparams.get(hp) for hp in hp_names})
    raw.update({f"elite/{name}": value for name, value in (record.elite_metrics or {}).items()})
    scalars = {tag: v for tag, v in ((tag, _finite(value)) for tag, value in raw.items())
               if v is not None}
    return Point(record.total_env_steps, scalars)


class Trackers:
    """Every active tracker, each fed the same point per generation."""

    def __init__(self, hp_names: Sequence[str], trackers: Sequence[Tracker]) -> None:
        self.hp_names = tuple(hp_names)
        self.trackers = tuple(trackers)

    def log(self, record: GenerationRecord) -> None:
        point = generation_point(record, self.hp_names)
        for tracker in self.trackers:
            tracker.write(point)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
