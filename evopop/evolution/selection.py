"""Tournament selection with elitism, drawing only from the generator it is given.

(AgileRL's tournament draws from the global `np.random`, so its runs cannot be reproduced.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
