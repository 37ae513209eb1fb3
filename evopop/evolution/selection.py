"""What selection decides (a `Plan`: one `Step` per slot of the next generation), the fitness
rules every strategy shares, and tournament selection with elitism. Truncation and
multi-frequency selection are in `evopop.evolution.pbt`.

Strategies draw only from the generator they are given (AgileRL's tournament draws from the
global `np.random`, so its runs cannot be reproduced).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from evopop.evolution.selection_settings import TournamentSelection

MIGRATION = "migration"
"""The lineage `mutation.kind` of a member that migrated between sub-populations."""


class Op(str, Enum):
    """How a slot of the next generation is filled."""

    KEEP = "keep"  # the source member passes on unchanged (same id)
    CLONE = "clone"  # a copy of the source member (a new id), then mutated
    MIGRATE = "migrate"  # a copy of a member of another sub-population, not mutated


@dataclass(frozen=True)
class Migration:
    """A copy made across sub-populations (multi-frequency selection). From a faster
    sub-population only the learned state moves: the copy takes the hyperparameters of
    `params_from` (the receiving sub-population's best); otherwise it moves whole."""

    origin: int  # sub-population of the source
    destination: int
    params_from: int | None = None  # a slot of the current generation

    def record(self) -> dict[str, Any]:
        """The migrant's lineage entry, in the shape of a mutation event."""
        moved = "weights" if self.params_from is not None else "whole member"
        return {"kind": MIGRATION, "detail": f"{moved} from sub-population {self.origin}",
                "old": self.origin, "new": self.destination}


@dataclass(frozen=True)
class Step:
    """Slot i of the next generation: `op` applied to the member in slot `source` now."""

    op: Op
    source: int
    migration: Migration | None = None  # set exactly when op is MIGRATE


Plan = tuple[Step, ...]


class PopulationDiverged(RuntimeError):
    """Every member's fitness is non-finite: there is nothing left to select from."""


def usable_fitness(fitnesses: Sequence[float]) -> np.ndarray:
    """Non-finite fitness (a diverged member) counts as -inf, so it never wins anything."""
    values = np.asarray(fitnesses, np.float64)
    return np.where(np.isfinite(values), values, -np.inf)


def elite_index(fitnesses: Sequence[float]) -> int:
    """The best member; ties go to the lowest index (stable, hence reproducible)."""
    values = usable_fitness(fitnesses)
    if not np.isfinite(values).any():
        raise PopulationDiverged("every member's loss or weights became non-finite; "
                                 "lower the learning rate or its hp_space bound")
    return int(np.argmax(values))


def tournament_select(
    fitnesses: Sequence[float],
    tournament_size: int,
    elitism: bool,
    rng: np.random.Generator,
) -> list[int]:
    """Indices of the parents of the next generation, one per slot.

    With elitism slot 0 is the elite (it passes unchanged); every other slot is won by the fittest
    of `tournament_size` members drawn without replacement. Diverged members never enter a
    tournament (their NaN weights would only be cloned); when fewer than `tournament_size`
    members are left, the tournament takes all of them.
    """
    values = usable_fitness(fitnesses)
    size = len(values)
    if not 1 <= tournament_size <= size:
        raise ValueError(f"tournament_size must be in [1, {size}], got {tournament_size}")
    alive = np.flatnonzero(np.isfinite(values))
    parents = [elite_index(values)] if elitism else []
    entrants = min(tournament_size, len(alive))
    while len(parents) < size:
        contestants = rng.choice(alive, entrants, replace=False)
        best = contestants[np.argmax(values[contestants])]
        parents.append(int(best))
    return parents


def tournament_plan(fitnesses: Sequence[float], settings: TournamentSelection,
                    rng: np.random.Generator) -> Plan:
    """Every slot a clone of its tournament's winner; with elitism slot 0 keeps the elite."""
    parents = tournament_select(fitnesses, settings.size, settings.elitism, rng)
    return tuple(Step(Op.KEEP if settings.elitism and slot == 0 else Op.CLONE, parent)
                 for slot, parent in enumerate(parents))
