"""Tournament selection: elitism, the best survives, non-finite members never win."""

import math

import numpy as np
import pytest

from evopop.evolution.selection import PopulationDiverged, elite_index, tournament_select


def test_elite_is_the_best_and_passes_first():
    parents = tournament_select([1.0, 5.0, 3.0, 2.0], 2, True, np.random.default_rng(0))
    assert parents[0] == 1 and len(parents) == 4


def test_full_size_tournaments_always_pick_the_best():
    parents = tournament_select([1.0, 5.0, 3.0, 2.0], 4, False, np.random.default_rng(0))
    assert parents == [1, 1, 1, 1]


def test_the_worst_member_never_wins_a_tournament_of_two():
    rng = np.random.default_rng(1)
    picks = [p for _ in range(200) for p in tournament_select([0.0, 1.0, 2.0], 2, False, rng)]
    assert 0 not in picks
    counts = np.bincount(picks, minlength=3)
    assert counts[2] > counts[1] > 0  # the best wins every tournament it enters


def test_diverged_members_never_enter_a_tournament():
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert tournament_select([math.nan, -math.inf, math.nan, 1.0], 2, False, rng) == [3] * 4


def test_non_finite_members_are_never_elite_and_all_diverged_raises():
    assert elite_index([math.nan, -math.inf, -3.0]) == 2
    parents = tournament_select([math.nan, -1.0], 2, True, np.random.default_rng(0))
    assert parents == [1, 1]
    with pytest.raises(PopulationDiverged):
        elite_index([math.nan, -math.inf])


def test_selection_is_reproducible_and_validates_tournament_size():
    fit = list(np.random.default_rng(0).normal(size=8))
    a = tournament_select(fit, 3, True, np.random.default_rng(5))
    b = tournament_select(fit, 3, True, np.random.default_rng(5))
    assert a == b
    with pytest.raises(ValueError, match="tournament_size"):
        tournament_select(fit, 9, True, np.random.default_rng(0))
