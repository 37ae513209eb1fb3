"""The `evolution.selection` section: one settings model per strategy, told apart by `kind`.

A strategy's own ranges are checked here; what depends on the population size (a tournament
that fits, sub-populations that add up) is checked by `EvolutionConfig`, which knows it.
"""

from __future__ import annotations

import itertools
import math
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MAX_INTERVAL = 10**6
"""Most generations between two evolution steps (or migrations) a config may ask for."""


class SelectionKind(str, Enum):
    """The strategies `evolution.selection` can name."""

    TOURNAMENT = "tournament"
    TRUNCATION = "truncation"
    MULTI_FREQUENCY = "multi_frequency"


_FROZEN = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TournamentSelection(BaseModel):
    """Every slot is won by the fittest of `size` members drawn at random; with elitism the
    best member passes unchanged into slot 0. Every new member is mutated."""

    model_config = _FROZEN

    kind: Literal[SelectionKind.TOURNAMENT] = Field(
        SelectionKind.TOURNAMENT, description="tournament")
    size: int = Field(2, ge=1, description="tournament: members drawn per tournament")
    elitism: bool = Field(True, description="tournament: the best member passes unchanged")


class TruncationSelection(BaseModel):
    """Ray Tune's PBT: the bottom `quantile` of the ranking is replaced by copies of members
    drawn uniformly from the top `quantile` (weights, optimizer state, normalisers and
    hyperparameters), which are then mutated; everyone else passes unchanged."""

    model_config = _FROZEN

    kind: Literal[SelectionKind.TRUNCATION] = Field(
        SelectionKind.TRUNCATION, description="truncation")
    quantile: float = Field(0.25, gt=0.0, le=0.5, description="truncation: fraction of the "
                            "population copied over (bottom) and copied from (top), at least one")


class MultiFrequencySelection(BaseModel):
    """MF-PBT (Doulazmi et al. 2025): sub-populations that evolve every `intervals[i]`
    generations, each by truncation within itself, and take better members of the others as
    migrants into the bracket just above their losers."""

    model_config = _FROZEN

    kind: Literal[SelectionKind.MULTI_FREQUENCY] = Field(
        SelectionKind.MULTI_FREQUENCY, description="multi_frequency")
    intervals: tuple[Annotated[int, Field(ge=1, le=MAX_INTERVAL)], ...] = Field(
        (1, 4), min_length=2, description="multi_frequency: generations between evolution "
        "steps of each sub-population, fastest first (strictly increasing)")
    sizes: tuple[Annotated[int, Field(ge=3)], ...] | None = Field(
        None, description="multi_frequency: members of each sub-population, at least 3 each "
        "(null: an equal split of population_size)")
    quantile: float = Field(0.25, gt=0.0, le=1 / 3, description="multi_frequency: fraction of "
                            "a sub-population in each of its winner, migration and loser "
                            "brackets (at least one each)")
    migration_interval: int | None = Field(
        None, ge=1, le=MAX_INTERVAL, description="multi_frequency: generations between "
        "migrations into every sub-population (null: at each sub-population's own evolution "
        "step, as in MF-PBT)")

    @model_validator(mode="after")
    def _valid(self) -> MultiFrequencySelection:
        if any(a >= b for a, b in itertools.pairwise(self.intervals)):
            raise ValueError(f"intervals must be strictly increasing, got {list(self.intervals)}")
        if self.sizes is not None and len(self.sizes) != len(self.intervals):
            raise ValueError(f"sizes has {len(self.sizes)} entries but intervals has "
                             f"{len(self.intervals)}: one size per sub-population")
        return self

    def sub_population_sizes(self, population_size: int) -> tuple[int, ...]:
        """`sizes`, or the equal split; raises ValueError where they do not fit."""
        count = len(self.intervals)
        sizes = self.sizes
        if sizes is None:
            if population_size % count:
                raise ValueError(f"population_size ({population_size}) does not split into "
                                 f"{count} equal sub-populations; give selection.sizes")
            sizes = (population_size // count,) * count
        if sum(sizes) != population_size:
            raise ValueError(f"selection.sizes add up to {sum(sizes)}, not population_size "
                             f"({population_size})")
        for size in sizes:
            if size < 3:
                raise ValueError(f"sub-populations of {list(sizes)} members: each needs at least 3 "
                                 "(a winner, a migration and a loser bracket)")
            bracket = bracket_size(size, self.quantile)
            if 3 * bracket > size:
                raise ValueError(f"quantile {self.quantile} puts {bracket} of a sub-population of "
                                 f"{size} in each of its winner, migration and loser brackets; "
                                 "lower it or enlarge the sub-population")
        return sizes


def bracket_size(members: int, quantile: float) -> int:
    """Members in a top or bottom `quantile` of `members`: at least one, at most half
    (Ray Tune's rule)."""
    return min(max(1, math.ceil(members * quantile)), members // 2)


def _kind_shorthand(value: Any) -> Any:
    """`selection: truncation` means that strategy with its defaults."""
    return {"kind": value} if isinstance(value, str) else value


SelectionSettings = Annotated[
    TournamentSelection | TruncationSelection | MultiFrequencySelection,
    Field(discriminator="kind"), BeforeValidator(_kind_shorthand)]
"""One of the strategies, picked by `kind` (or named alone: `selection: truncation`)."""
