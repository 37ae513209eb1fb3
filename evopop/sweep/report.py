"""What a sweep writes: one CSV row per run, settings ranked in Markdown and in a figure.

Ranking and steps-to-target are pure functions of plain data so they can be tested exactly.
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
    diverged run's best fitness (null) counts as -inf, which ranks its setting last."""

    setting: tuple[Any, ...]
    runs: int
    solved: int
    best: tuple[float, ...]
    steps: tuple[int, ...]  # steps to target of the runs that reached it
    best_mean: float
    best_std: float
    steps_mean: float | None
    steps_std: float | None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not all(math.isfinite(v) for v in values):
        return min(values), math.nan
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


def _stats(setting: tuple[Any, ...], rows: Sequence[Mapping[str, Any]]) -> SettingStats:
    best = tuple(-math.inf if r[Column.BEST_FITNESS.value] is None
                 else float(r[Column.BEST_FITNESS.value]) for r in rows)
    steps = tuple(int(r[Column.STEPS_TO_TARGET.value]) for r in rows
                  if r[Column.STEPS_TO_TARGET.value] is not None)
    best_mean, best_std = _mean_std(best)
    steps_mean, steps_std = _mean_std(steps) if steps else (None, None)
    return SettingStats(setting, len(rows), sum(bool(r[Column.TARGET_REACHED.value]) for r in rows),
                        best, steps, best_mean, best_std, steps_mean, steps_std)


def rank_settings(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[SettingStats]:
    """Settings by the fraction of seeds that reached the target (desc), then mean env steps to
    the target (asc), then mean best fitness (desc); ties keep the order of first appearance.

    Best fitness comes last because a run stops at the first generation that reaches the target:
    above the target it is noise, while speed to the target is what a setting buys.
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
        -s.solved / s.runs, math.inf if s.steps_mean is None else s.steps_mean, -s.best_mean))


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


def _pm(mean: float | None, std: float | None, fmt: str) -> str:
    if mean is None:
        return "—"
    if not math.isfinite(mean):
        return "diverged"
    return f"{mean:{fmt}} ± {std:{fmt}}"


def summary_markdown(title: str, keys: Sequence[str], stats: Sequence[SettingStats],
                     note: str) -> str:
    """summary.md: one table row per setting, best first."""
    head = ["rank", *keys, "runs", "solved", "best fitness", "env steps to target"]
    lines = [f"# Sweep `{title}`", "", note, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, s in enumerate(stats, 1):
        cells = [str(rank), *(_cell(v) for v in s.setting), str(s.runs), str(s.solved),
                 _pm(s.best_mean, s.best_std, ".1f"), _pm(s.steps_mean, s.steps_std, ",.0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_png(stats: Sequence[SettingStats], label: Callable[[Sequence[Any]], str],
                title: str) -> bytes:
    """Two panels, best setting on top: best fitness and env steps to target, mean ± std over
    seeds (bars), every seed (dots)."""
    from matplotlib.figure import Figure  # pyplot-free: the caller's backend stays as it was

    n = len(stats)
    ys = list(range(n))[::-1]
    fig = Figure(figsize=(12, 1.6 + 0.55 * n), layout="constrained")
    ax_fit, ax_steps = fig.subplots(1, 2, sharey=True)
    bar = {"alpha": 0.6, "capsize": 4, "error_kw": {"ecolor": "0.35"}}
    dots = {"marker": "o", "ls": "", "mfc": "white", "mec": "black", "ms": 5}
    for y, s in zip(ys, stats, strict=True):
        if math.isfinite(s.best_mean):
            ax_fit.barh(y, s.best_mean, xerr=s.best_std, color="tab:blue", **bar)
        else:
            ax_fit.annotate("a run diverged", (0, y), xytext=(4, 0), textcoords="offset points",
                            va="center", color="tab:red")
        finite = [b for b in s.best if math.isfinite(b)]
        ax_fit.plot(finite, [y] * len(finite), **dots)
        if s.steps_mean is not None:
            ax_steps.barh(y, s.steps_mean, xerr=s.steps_std, color="tab:green", **bar)
            ax_steps.plot(s.steps, [y] * len(s.steps), **dots)
    ax_fit.set_yticks(ys, [label(s.setting) for s in stats])
    solved = ax_steps.secondary_yaxis("right")
    solved.set_yticks(ys, [f"{s.solved}/{s.runs} solved" for s in stats])
    ax_fit.set_xlabel("best elite fitness (mean ± std; dots: seeds)")
    ax_steps.set_xlabel("env steps to target (mean ± std over solved seeds)")
    for ax in (ax_fit, ax_steps):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"sweep {title}: settings ranked, best on top")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_reports(out_dir: Path, rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
                  label: Callable[[Sequence[Any]], str], title: str, note: str) -> None:
    """results.csv, summary.md and summary.png, each written atomically."""
    stats = rank_settings(rows, keys)
    atomic_write_bytes(out_dir / RESULTS_FILE, results_csv(rows, keys).encode())
    atomic_write_bytes(out_dir / SUMMARY_MD, summary_markdown(title, keys, stats, note).encode())
    atomic_write_bytes(out_dir / SUMMARY_PNG, summary_png(stats, label, title))
