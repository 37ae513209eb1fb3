"""Sweep statistics: IQM, probability of improvement, seeded bootstrap intervals, verdicts, and
the summary that reports them (or degrades without scipy)."""

import math
import warnings

import numpy as np
import pytest
import scipy.stats

import evopop.sweep.report as report
from evopop.sweep.report import compare, rank_settings, write_reports
from evopop.sweep.stats import (
    Interval,
    Verdict,
    improvement_interval,
    iqm,
    iqm_interval,
    probability_of_improvement,
    verdict,
)


@pytest.mark.parametrize(("scores", "expected"), [
    ([4.0], 4.0),
    ([1.0, 2.0, 3.0], 2.0),  # n < 4: nothing trimmed, the mean
    ([1.0, 2.0, 3.0, 4.0], 2.5),  # one cut at each end
    ([5.0, 1.0, 100.0, 2.0, 3.0], 10.0 / 3.0),  # the outlier 100 and the 1 go
    (list(range(8)), 3.5),  # two cut at each end: mean of 2, 3, 4, 5
    ([-math.inf, 1.0, 2.0, 3.0], 1.5),  # a diverged seed trimmed away (and the 3)
    ([-math.inf, -math.inf, 2.0, 3.0], -math.inf),  # two are not
])
def test_iqm_of_known_arrays(scores, expected):
    assert iqm(scores) == pytest.approx(expected)


def test_iqm_matches_scipy_trim_mean_along_any_axis():
    rng = np.random.default_rng(3)
    for n in range(1, 13):
        x = rng.normal(size=(3, n))
        assert np.allclose(iqm(x), scipy.stats.trim_mean(x, 0.25, axis=1))
        assert np.allclose(iqm(x.T, axis=0), iqm(x))


@pytest.mark.parametrize(("x", "y", "expected"), [
    ([3.0, 4.0, 5.0], [0.0, 1.0, 2.0], 1.0),  # fully separated
    ([0.0, 1.0, 2.0], [3.0, 4.0, 5.0], 0.0),
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 0.5),  # identical
    ([2.0, 3.0, 5.0], [1.0, 4.0], 4.0 / 6.0),  # 2 and 3 beat 1; 5 beats both
    ([1.0, 2.0], [2.0, 2.0], 0.25),  # ties count half
    ([-math.inf], [-math.inf], 0.5),  # two diverged runs tie
    ([-math.inf, 0.0], [1.0], 0.0),
])
def test_probability_of_improvement_by_hand(x, y, expected):
    assert float(probability_of_improvement(x, y)) == pytest.approx(expected)


def test_probability_of_improvement_is_the_mann_whitney_u_over_n_m():
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 5, 7).astype(float), rng.integers(0, 5, 4).astype(float)  # with ties
    u = scipy.stats.mannwhitneyu(x, y).statistic
    assert float(probability_of_improvement(x, y)) == pytest.approx(u / (len(x) * len(y)))
    assert float(probability_of_improvement(y, x)) == pytest.approx(1 - u / (len(x) * len(y)))


def test_intervals_of_separated_and_identical_settings_are_exact():
    low, high = [0.0, 1.0, 2.0, 3.0, 4.0], [10.0, 11.0, 12.0, 13.0, 14.0]
    # every resample of fully separated runs is still fully separated
    assert improvement_interval(high, low, 1) == Interval(1.0, 1.0)
    assert improvement_interval(low, high, 1) == Interval(0.0, 0.0)
    assert iqm_interval([7.0] * 5, 0) == Interval(7.0, 7.0)
    # two runs: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4, so the 2.5 % and
    # 97.5 % points are 0 and 1
    assert iqm_interval([0.0, 1.0], 0) == Interval(0.0, 1.0)


def test_intervals_are_seeded_by_their_stream_and_bracket_the_estimate():
    scores = [0.1, 0.5, 0.2, 0.9, 0.4]
    first = iqm_interval(scores, 3)
    assert first == iqm_interval(scores, 3)  # the same stream: the same interval
    many = np.random.default_rng(5).normal(size=12).tolist()  # enough for distinct resamples
    assert iqm_interval(many, 3) != iqm_interval(many, 4)
    assert min(scores) <= first.low <= float(iqm(scores)) <= first.high <= max(scores)
    other = [0.3, 0.6, 0.8, 0.7, 1.0]
    p = float(probability_of_improvement(scores, other))
    ci = improvement_interval(scores, other, 5)
    assert ci == improvement_interval(scores, other, 5) and ci.low <= p <= ci.high


def test_intervals_need_two_runs_and_survive_a_diverged_run():
    assert iqm_interval([1.0], 0) is None
    assert improvement_interval([1.0, 2.0], [3.0], 0) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ci = iqm_interval([-math.inf, 1.0, 2.0, 3.0, 4.0], 0)
    assert ci.low == -math.inf and math.isfinite(ci.high)


@pytest.mark.parametrize(("p", "interval", "expected"), [
    (0.1, Interval(0.0, 0.45), Verdict.WORSE),
    (0.1, Interval(0.0, 0.5), Verdict.TIED),  # the interval reaches 0.5: could be luck
    (0.25, Interval(0.1, 0.4), Verdict.TIED),  # the band [0.25, 0.75] is closed
    (0.3, Interval(0.2, 0.4), Verdict.TIED),  # consistent but too small an edge
    (0.5, Interval(0.5, 0.5), Verdict.TIED),
    (0.76, Interval(0.55, 0.9), Verdict.BETTER),
    (0.76, Interval(0.5, 0.9), Verdict.TIED),
    (0.0, None, None),  # no interval, no verdict
])
def test_verdict_rule(p, interval, expected):
    assert verdict(p, interval) is expected


def _rows(scores_by_setting: dict[float, list[float]]) -> list[dict]:
    """results.csv rows of a targetless sweep over one key `a`."""
    return [{"a": a, "seed": seed, "best_fitness": score, "env_steps_to_target": None,
             "target_reached": False, "wall_s": 1.0, "generations": 10,
             "total_env_steps": 1000, "run_dir": f"runs/a={a}-seed{seed}"}
            for a, scores in scores_by_setting.items() for seed, score in enumerate(scores)]


def test_settings_rank_by_iqm_so_one_lucky_seed_does_not_win():
    rows = _rows({0.0: [9.0, 9.0, 9.0, 9.0, 100.0], 1.0: [0.0, 10.0, 10.0, 10.0, 10.0]})
    stats = rank_settings(rows, ["a"])
    assert [s.setting for s in stats] == [(1.0,), (0.0,)]  # IQM 10 > 9, though mean 8 < 27.2
    assert (stats[0].best_iqm, stats[0].best_mean) == (10.0, 8.0)


def test_comparisons_against_the_best_setting():
    rows = _rows({0.0: [0.0, 1.0, 2.0, 3.0, 4.0], 1.0: [10.0, 11.0, 12.0, 13.0, 14.0],
                  2.0: [10.5, 11.5, 12.5, 13.5, 9.0]})
    stats = rank_settings(rows, ["a"])
    assert [s.setting for s in stats] == [(1.0,), (2.0,), (0.0,)]
    best, close, far = compare(stats, intervals=True)
    assert (best.verdict, best.p_improvement, best.p_interval) == (Verdict.BEST, 0.5, None)
    assert best.iqm_interval.low <= 12.0 <= best.iqm_interval.high
    assert close.verdict is Verdict.TIED and close.p_improvement == pytest.approx(0.4)
    assert far.verdict is Verdict.WORSE and far.p_interval == Interval(0.0, 0.0)
    assert [c.verdict for c in compare(stats, intervals=False)] == [Verdict.BEST, None, None]


def _report(tmp_path, scores_by_setting) -> str:
    write_reports(tmp_path, _rows(scores_by_setting), ["a"], lambda s: f"a={s[0]}", "t", "note")
    return (tmp_path / "summary.md").read_text()


def _table(markdown: str) -> list[list[str]]:
    rows = [x for x in markdown.splitlines() if x.startswith("| ") and "rank" not in x]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_summary_says_which_settings_differ_with_intervals(tmp_path):
    md = _report(tmp_path, {0.0: [0.0, 1.0, 2.0, 3.0, 4.0], 1.0: [10.0, 11.0, 12.0, 13.0, 14.0]})
    best, worse = _table(md)
    assert best[0:2] == ["1", "1.0"] and best[6:8] == ["—", "best"]
    assert best[5].startswith("12 [") and worse[5].startswith("2 [")
    assert worse[6:8] == ["0.00 [0.00, 0.00]", "worse"]
    assert "**Answer.** `a=1.0` ranks first. Worse than it: `a=0.0`." in md
    assert "Score per run: `best_fitness`" in md and "P(> best) < 0.25" in md
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = md
    assert _report(tmp_path, {0.0: [0.0, 1.0, 2.0, 3.0, 4.0],
                              1.0: [10.0, 11.0, 12.0, 13.0, 14.0]}) == first  # seeded


def test_summary_says_plainly_when_settings_cannot_be_told_apart(tmp_path):
    md = _report(tmp_path, {0.0: [1.0, 2.0, 3.0, 4.0, 5.0], 1.0: [1.0, 2.0, 3.0, 4.0, 5.0]})
    _, other = _table(md)
    assert other[6].startswith("0.50 [") and other[7] == "cannot be told apart"
    assert "No setting can be told apart from the best, `a=0.0`" in md


def test_summary_without_scipy_keeps_mean_and_std_and_says_how_to_install(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(report, "bootstrap_available", lambda: False)
    md = _report(tmp_path, {0.0: [0.0, 1.0, 2.0, 3.0, 4.0], 1.0: [10.0, 11.0, 12.0, 13.0, 14.0]})
    notes = [x for x in md.splitlines() if "pip install" in x]
    assert notes == ["Intervals and verdicts need scipy, not installed: "
                     "pip install scipy (evopop's `sweep` extra)."]
    best, worse = _table(md)
    assert best[4] == "12 ± 1.58" and worse[4] == "2 ± 1.58"  # mean ± std kept
    assert (best[5], worse[5], worse[6], worse[7]) == ("12", "2", "0.00", "—")  # no intervals
    assert "Without intervals the settings are not told apart." in md
    assert (tmp_path / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
