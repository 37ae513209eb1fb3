"""Rank-based selection as in population-based training: truncation (Ray Tune's PBT) and
multi-frequency selection (MF-PBT, Doulazmi et al. 2025, as AgileRL 2.9 ships it).

Both exploit by copying a whole member (weights, optimizer state, normalisers,
hyperparameters); the copies that replace losers are then explored by the usual mutations.
Members that are not replaced pass on unchanged in their slots, so a slot's sub-population
never changes. Ranks break ties by slot (first wins), and a diverged member (non-finite
fitness) ranks last and never passes on: it is replaced even where its bracket would not be.
Which sub-populations evolve is a function of the generation number alone, so resuming needs
no selection state.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from evopop.evolution.selection import Migration, Op, Plan, Step, elite_index, usable_fitness
from evopop.evolution.selection_settings import (
    MultiFrequencySelection,
    TruncationSelection,
    bracket_size,
)


def ranking(values: np.ndarray, slots: Sequence[int]) -> list[int]:
    """`slots` best first; equal fitness keeps slot order, -inf (diverged) comes last."""
    order = np.argsort(-values[list(slots)], kind="stable")
    return [int(slots[i]) for i in order]


def _draw(donors: Sequence[int], rng: np.random.Generator) -> int:
    return int(donors[int(rng.integers(len(donors)))])


def truncation_plan(fitnesses: Sequence[float], settings: TruncationSelection,
                    rng: np.random.Generator) -> Plan:
    """The bottom `quantile` (and any diverged member) becomes a copy of a member drawn
    uniformly from the top `quantile`, in slot order; everyone else is kept."""
    values = usable_fitness(fitnesses)
    elite_index(values)  # raises when every member diverged: there is nobody to copy
    order = ranking(values, range(len(values)))
    count = bracket_size(len(values), settings.quantile)
    donors = [s for s in order[:count] if np.isfinite(values[s])]
    losers = set(order[len(order) - count:]) | set(np.flatnonzero(~np.isfinite(values)).tolist())
    return tuple(Step(Op.CLONE, _draw(donors, rng)) if slot in losers else Step(Op.KEEP, slot)
                 for slot in range(len(values)))


def sub_populations(settings: MultiFrequencySelection, population_size: int) -> list[range]:
    """The slots of each sub-population, fastest first."""
    bounds = np.cumsum((0, *settings.sub_population_sizes(population_size))).tolist()
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


def _migrants(values: np.ndarray, open_slots: list[int],
              external: list[int]) -> list[tuple[int, int]]:
    """(open slot, migrant) pairs: the open slots, best first, each take the next best
    external member that is strictly fitter (Algorithm 2 of the MF-PBT paper)."""
    pairs, nxt = [], 0
    for slot in open_slots:
        if nxt == len(external):
            break
        if values[slot] >= values[external[nxt]]:
            continue
        pairs.append((slot, external[nxt]))
        nxt += 1
    return pairs


def multi_frequency_plan(fitnesses: Sequence[float], settings: MultiFrequencySelection,
                         generation: int, rng: np.random.Generator) -> Plan:
    """Sub-population i evolves when `generation + 1` is a multiple of `intervals[i]`: its
    ranking splits into winners, survivors, a migration bracket and losers (`quantile` of it
    in each of winners, migration, losers). Losers become copies of its winners (drawn
    uniformly, in slot order), to be mutated. At a migration (its evolution step, or every
    `migration_interval` generations) each migration slot, best first, takes the next best
    strictly fitter member of the other sub-populations: from a faster sub-population its
    weights with the hyperparameters of the receiving sub-population's best, from a slower one
    the whole member. Sources are this generation's members, whatever replaces them."""
    values = usable_fitness(fitnesses)
    elite = elite_index(values)
    subs = sub_populations(settings, len(values))
    home = {slot: i for i, sub in enumerate(subs) for slot in sub}
    plan = [Step(Op.KEEP, slot) for slot in range(len(values))]
    tick = generation + 1
    winners: list[list[int]] = []
    for i, sub in enumerate(subs):
        order = ranking(values, sub)
        count = bracket_size(len(sub), settings.quantile)
        winners.append([s for s in order[:count] if np.isfinite(values[s])] or [elite])
        evolves = tick % settings.intervals[i] == 0
        if evolves:
            for slot in sorted(order[len(order) - count:]):
                plan[slot] = Step(Op.CLONE, _draw(winners[i], rng))
        every = settings.migration_interval
        if (evolves if every is None else tick % every == 0):
            external = ranking(values, [s for s in range(len(values)) if home[s] != i])
            open_slots = order[len(order) - 2 * count:len(order) - count]
            for slot, source in _migrants(values, open_slots, external):
                faster = home[source] < i  # intervals increase with the index
                move = Migration(home[source], i, winners[i][0] if faster else None)
                plan[slot] = Step(Op.MIGRATE, source, move)
    for slot, step in enumerate(plan):
        if step.op is Op.KEEP and not np.isfinite(values[slot]):
            plan[slot] = Step(Op.CLONE, _draw(winners[home[slot]], rng))
    return tuple(plan)
