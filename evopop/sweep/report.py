"""What a sweep writes: one CSV row per run, settings ranked in Markdown and in a figure.

Ranking, steps-to-target and the statistics are pure functions of plain data so they can be
tested exactly. The statistics (evopop.sweep.stats) compare one score per run: `SCORE`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from evopop.atomic import atomic_write_bytes
from evopop.records import GenerationRecord, RunSummary, json_number
from evopop.sweep.stats import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    INSTALL_HINT,
    RESAMPLES,
    TIED_BAND,
    Interval,
    Verdict,
    bootstrap_available,
    improvement_interval,
    iqm,
    iqm_interval,
    probability_of_improvement,
    verdict,
)


class Column(str, Enum):
    """Per-run result columns of results.csv, after one column per grid key."""

    SEED = "seed"
    TARGET_REACHED = "target_reached"
    BEST_FITNESS = "best_fitness"
    STEPS_TO_TARGET = "env_steps_to_target"
    WALL_S = "wall_s"
    GENERATIONS = "generations"
    TOTAL_ENV_STEPS = "total_env_steps"
    RUN_DIR = "run_dir"


SCORE = Column.BEST_FITNESS  # a run's score: its best elite fitness over all generations
RESULTS_FILE = "results.csv"
SUMMARY_MD = "summary.md"
SUMMARY_PNG = "summary.png"


def steps_to_target(metrics: Iterable[GenerationRecord], target: float | None) -> int | None:
    """The run's `total_env_steps` at the first generation whose elite reached `target`."""
    if target is None:
        return None
    return next((r.total_env_steps for r in metrics if r.elite_fitness >= target), None)


def run_row(grid: Mapping[str, Any], seed: int, summary: RunSummary,
            metrics: Iterable[GenerationRecord], target: float | None,
            run_dir: str) -> dict[str, Any]:
    """One results.csv row: the run's grid values, seed and outcome (a diverged run's best
    fitness is an empty cell)."""
    return {**grid, Column.SEED.value: seed,
            Column.TARGET_REACHED.value: summary.target_reached,
            Column.BEST_FITNESS.value: json_number(summary.best_fitness),
            Column.STEPS_TO_TARGET.value: steps_to_target(metrics, target),
            Column.WALL_S.value: summary.wall_s,
            Column.GENERATIONS.value: summary.generations,
            Column.TOTAL_ENV_STEPS.value: summary.total_env_steps,
            Column.RUN_DIR.value: run_dir}


@dataclass(frozen=True)
class SettingStats:
    """One grid setting over its seeds. Spreads are sample std (0 for a single value); a
    diverged run's best fitness (null) counts as -inf: its mean is -inf, and so is its IQM
    unless the run is among the quarter trimmed (IQM of 4 or more seeds)."""

    setting: tuple[Any, ...]
    runs: int
    solved: int
    best: tuple[float, ...]
    steps: tuple[int, ...]  # steps to target of the runs that reached it
    best_mean: float
    best_std: float
    best_iqm: float
    steps_mean: float | None
    steps_std: float | None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not all(math.isfinite(v) for v in values):
        return min(values), math.nan
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


def _stats(setting: tuple[Any, ...], rows: Sequence[Mapping[str, Any]]) -> SettingStats:
    best = tuple(-math.inf if r[SCORE.value] is None else float(r[SCORE.value]) for r in rows)
    steps = tuple(int(r[Column.STEPS_TO_TARGET.value]) for r in rows
                  if r[Column.STEPS_TO_TARGET.value] is not None)
    best_mean, best_std = _mean_std(best)
    steps_mean, steps_std = _mean_std(steps) if steps else (None, None)
    return SettingStats(setting, len(rows), sum(bool(r[Column.TARGET_REACHED.value]) for r in rows),
                        best, steps, best_mean, best_std, float(iqm(best)), steps_mean, steps_std)


def rank_settings(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[SettingStats]:
    """Settings by the fraction of seeds that reached the target (desc), then mean env steps to
    the target (asc), then the IQM of best fitness (desc); ties keep the order of first
    appearance.

    Best fitness comes last because a run stops at the first generation that reaches the target:
    above the target it is noise, while speed to the target is what a setting buys. Without a
    target (or where no seed reaches it) the IQM of best fitness decides alone.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    settings: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        setting = tuple(row[k] for k in keys)
        ident = json.dumps(setting, sort_keys=True, default=str)
        groups.setdefault(ident, []).append(row)
        settings.setdefault(ident, setting)
    stats = [_stats(settings[ident], group) for ident, group in groups.items()]
    return sorted(stats, key=lambda s: (
        -s.solved / s.runs, math.inf if s.steps_mean is None else s.steps_mean, -s.best_iqm))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def results_csv(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    """results.csv text: one column per grid key, then the `Column`s; empty cell = none."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = [*keys, *(c.value for c in Column)]
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return out.getvalue()


@dataclass(frozen=True)
class Comparison:
    """A setting's statistics against the best (rank 1) setting. Intervals are None without
    scipy or with fewer than two seeds, and then so is the verdict."""

    iqm_interval: Interval | None
    p_improvement: float  # P(a run of this setting scores above a run of the best one)
    p_interval: Interval | None
    verdict: Verdict | None


def compare(stats: Sequence[SettingStats], intervals: bool) -> list[Comparison]:
    """One `Comparison` per ranked setting, the first being the best. Each interval has its
    own bootstrap stream (2 x rank for the IQM, 2 x rank + 1 for P), so it is reproducible."""
    reference = stats[0].best
    out = []
    for rank, s in enumerate(stats):
        iqm_ci = iqm_interval(s.best, 2 * rank) if intervals else None
        p = float(probability_of_improvement(s.best, reference))
        if rank == 0:
            out.append(Comparison(iqm_ci, p, None, Verdict.BEST))
            continue
        p_ci = improvement_interval(s.best, reference, 2 * rank + 1) if intervals else None
        out.append(Comparison(iqm_ci, p, p_ci, verdict(p, p_ci)))
    return out


def _pm(mean: float | None, std: float | None, fmt: str) -> str:
    if mean is None:
        return "—"
    if not math.isfinite(mean):
        return "diverged"
    return f"{mean:{fmt}} ± {std:{fmt}}"


def _num(value: float, fmt: str) -> str:
    return f"{value:{fmt}}" if math.isfinite(value) else "−inf"


def _with_interval(value: float, interval: Interval | None, fmt: str) -> str:
    point = _num(value, fmt)
    if interval is None:
        return point
    return f"{point} [{_num(interval.low, fmt)}, {_num(interval.high, fmt)}]"


def statistics_note(intervals: bool, min_runs: int) -> str:
    """What the statistics columns mean and the rule behind the verdicts."""
    pct = f"{CONFIDENCE:.0%}"
    text = (f"Score per run: `{SCORE.value}` (results.csv), the best fitness its elite reached in "
            f"any generation. IQM: interquartile mean of the scores over seeds; [a, b]: {pct} "
            f"percentile stratified-bootstrap interval ({RESAMPLES:,} resamples, seed "
            f"{BOOTSTRAP_SEED}). P(> best): the probability that a run of the setting scores "
            f"above a run of the rank-1 setting (ties count half). Rule: a setting is worse "
            f"(better) than the best only when P(> best) < {TIED_BAND[0]} (> {TIED_BAND[1]}) "
            f"and its interval lies wholly below (above) 0.5; otherwise the two cannot be told "
            f"apart.")
    if not intervals:
        return f"{text}\n\nIntervals and verdicts need scipy, not installed: {INSTALL_HINT}."
    if min_runs < 2:
        return f"{text}\n\nIntervals and verdicts need at least two seeds per setting."
    return text


def answer(labels: Sequence[str], comparisons: Sequence[Comparison]) -> str:
    """The sweep's answer in words: which settings differ from the best, and which do not."""
    if any(c.verdict is None for c in comparisons):
        return "Without intervals the settings are not told apart."
    named = {v: [f"`{lab}`" for lab, c in zip(labels, comparisons, strict=True)
                 if c.verdict is v] for v in Verdict}
    best = named[Verdict.BEST][0]
    if len(labels) == 1:
        return f"One setting, {best}: nothing to compare."
    if not named[Verdict.WORSE] and not named[Verdict.BETTER]:
        return (f"No setting can be told apart from the best, {best}, with these seeds and "
                f"budget: the table's order is not evidence.")
    parts = [f"{best} ranks first."]
    if named[Verdict.WORSE]:
        parts.append(f"Worse than it: {', '.join(named[Verdict.WORSE])}.")
    if named[Verdict.BETTER]:
        parts.append(f"Higher scores than it (it ranks first on the target): "
                     f"{', '.join(named[Verdict.BETTER])}.")
    if named[Verdict.TIED]:
        parts.append(f"Cannot be told apart from it: {', '.join(named[Verdict.TIED])}.")
    return " ".join(parts)


def summary_markdown(title: str, keys: Sequence[str], stats: Sequence[SettingStats],
                     comparisons: Sequence[Comparison], labels: Sequence[str], note: str,
                     intervals: bool) -> str:
    """summary.md: one table row per setting, best first, then the answer in words."""
    head = ["rank", *keys, "runs", "solved", "mean ± std", "IQM [95% CI]",
            "P(> best) [95% CI]", "vs best", "env steps to target"]
    lines = [f"# Sweep `{title}`", "", note, "",
             statistics_note(intervals, min(s.runs for s in stats)), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, (s, c) in enumerate(zip(stats, comparisons, strict=True), 1):
        p = "—" if c.verdict is Verdict.BEST else _with_interval(c.p_improvement, c.p_interval,
                                                                  ".2f")
        cells = [str(rank), *(_cell(v) for v in s.setting), str(s.runs), str(s.solved),
                 _pm(s.best_mean, s.best_std, ".3g"),
                 _with_interval(s.best_iqm, c.iqm_interval, ".3g"), p,
                 "—" if c.verdict is None else c.verdict.value,
                 _pm(s.steps_mean, s.steps_std, ",.0f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"**Answer.** {answer(labels, comparisons)}"]
    return "\n".join(lines) + "\n"


def _iqm_error(centre: float, ci: Interval, finite: Sequence[float]) -> list[list[float]]:
    """Error-bar lengths of an interval; a -inf end (a diverged seed) is drawn to the lowest
    finite seed."""
    low = ci.low if math.isfinite(ci.low) else min(finite)
    return [[centre - low], [ci.high - centre]]


def _score_panel(ax: Any, ys: Sequence[int], stats: Sequence[SettingStats],
                 comparisons: Sequence[Comparison]) -> None:
    """IQM bars with their intervals (mean ± std where there are none), every seed a dot."""
    dots = {"marker": "o", "ls": "", "mfc": "white", "mec": "black", "ms": 5}
    with_ci = all(c.iqm_interval is not None for c in comparisons)
    for y, s, c in zip(ys, stats, comparisons, strict=True):
        centre = s.best_iqm if with_ci else s.best_mean
        finite = [b for b in s.best if math.isfinite(b)]
        if math.isfinite(centre):
            err = _iqm_error(centre, c.iqm_interval, finite) if with_ci else s.best_std
            ax.barh(y, centre, xerr=err, color="tab:blue", alpha=0.6, capsize=4,
                    error_kw={"ecolor": "0.35"})
        else:
            ax.annotate("runs diverged", (0, y), xytext=(4, 0), textcoords="offset points",
                        va="center", color="tab:red")
        ax.plot(finite, [y] * len(finite), **dots)
    what = f"IQM, {CONFIDENCE:.0%} CI" if with_ci else "mean ± std"
    ax.set_xlabel(f"best elite fitness ({what}; dots: seeds)")


def _improvement_panel(ax: Any, ys: Sequence[int], comparisons: Sequence[Comparison]) -> None:
    """P(> best) with its interval; the shaded band is where settings cannot be told apart."""
    ax.axvspan(*TIED_BAND, color="0.9", zorder=0)
    ax.axvline(0.5, color="0.5", lw=1, ls="--")
    ax.annotate("best", (0.5, ys[0]), ha="center", va="center", color="0.3")
    for y, c in zip(ys[1:], comparisons[1:], strict=True):
        ci = c.p_interval
        err = None if ci is None else [[c.p_improvement - ci.low], [ci.high - c.p_improvement]]
        colour = "tab:gray" if c.verdict in (Verdict.TIED, None) else "tab:red"
        ax.errorbar(c.p_improvement, y, xerr=err, fmt="o", color=colour, capsize=4)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("P(run beats a run of the best setting); grey band: cannot be told apart")


def summary_png(stats: Sequence[SettingStats], comparisons: Sequence[Comparison],
                label: Callable[[Sequence[Any]], str], title: str) -> bytes:
    """Best setting on top: the score (IQM with its interval, dots: seeds), P(improvement) over
    the best, and env steps to target where a run reached one (mean ± std over solved seeds)."""
    from matplotlib.figure import Figure  # pyplot-free: the caller's backend stays as it was

    n = len(stats)
    ys = list(range(n))[::-1]
    with_steps = any(s.steps for s in stats)
    fig = Figure(figsize=(6 * (2 + with_steps), 1.6 + 0.55 * n), layout="constrained")
    axes = fig.subplots(1, 2 + with_steps, sharey=True)
    _score_panel(axes[0], ys, stats, comparisons)
    _improvement_panel(axes[1], ys, comparisons)
    if with_steps:
        for y, s in zip(ys, stats, strict=True):
            if s.steps_mean is not None:
                axes[2].barh(y, s.steps_mean, xerr=s.steps_std, color="tab:green", alpha=0.6,
                             capsize=4, error_kw={"ecolor": "0.35"})
                axes[2].plot(s.steps, [y] * len(s.steps), "o", mfc="white", mec="black", ms=5)
        axes[2].set_xlabel("env steps to target (mean ± std over solved seeds)")
    axes[0].set_yticks(ys, [label(s.setting) for s in stats])
    solved = axes[-1].secondary_yaxis("right")
    solved.set_yticks(ys, [f"{s.solved}/{s.runs} solved" for s in stats])
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"sweep {title}: settings ranked, best on top")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_reports(out_dir: Path, rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
                  label: Callable[[Sequence[Any]], str], title: str, note: str) -> None:
    """results.csv, summary.md and summary.png, each written atomically."""
    stats = rank_settings(rows, keys)
    intervals = bootstrap_available()
    comparisons = compare(stats, intervals)
    labels = [label(s.setting) for s in stats]
    markdown = summary_markdown(title, keys, stats, comparisons, labels, note, intervals)
    atomic_write_bytes(out_dir / RESULTS_FILE, results_csv(rows, keys).encode())
    atomic_write_bytes(out_dir / SUMMARY_MD, markdown.encode())
    atomic_write_bytes(out_dir / SUMMARY_PNG, summary_png(stats, comparisons, label, title))
