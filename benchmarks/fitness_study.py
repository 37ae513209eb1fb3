"""Which fitness predicts an elite's return on fresh episodes? (issue 12)

Small populations train on a few tasks. After every generation's training each member is
played, in this process, on 64 deterministic evaluation episodes (the generation's evaluation
seeds, `evopop.evolution.loop.eval_seed`: a run with `eval_episodes: K` plays the first K of
them) and on 50 fresh deterministic episodes whose seeds are none of any generation's
evaluation seeds; its `train` fitness is the mean return of its last 20 training episodes
(`evopop.evolution.fitness`). Selection in these runs uses eval-32 (the mean of the first 32
evaluation episodes). For every fitness mode (eval-3, eval-10, eval-32, eval-64, train) the
study reports, per task:

- `pearson`, `spearman`: correlation of the mode's fitness with the fresh return, over every
  member of every generation and seed;
- `gap_se`: the mean, over generations and seeds, of (fitness - fresh return) of the member the
  mode would pick as elite (its argmax), in units of that member's fresh standard error
  (std / sqrt(50)); `gap_se_median`, and `over_1se`: the share of elites above 1 SE;
- `picks_best`: how often that elite is the member with the best fresh return;
- `regret_se`: best fresh return minus the elite's, in fresh SE.

`gap` is the elite's mean gap in the task's return units. An SE of 0 (every fresh episode
scored the same) counts a gap of 0 as 0 SE; any other gap is then undefined in SE and left out
of the SE figures (counted as `undefined`). The `all` rows pool the elites of every task (SE
units compare across tasks) and average the per-task correlations. Rows go to `--out` (JSON),
`--load` adds earlier ones to the analysis; the table prints as markdown, the last line is
JSON. Each run prints its wall and CPU seconds (the driver and its member workers).

    nice -n 5 python benchmarks/fitness_study.py [--tasks pendulum cartpole count] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evopop.agents.evaluation import eval_env_spec, evaluate
from evopop.config import load_config, parse_config
from evopop.envs import make_vec_env
from evopop.evolution.backends import make_backend
from evopop.evolution.fitness import FitnessMode, disjoint_start
from evopop.evolution.loop import Population, eval_seed
from evopop.evolution.settings import RunConfig
from evopop.execution.placement import Placement
from evopop.execution.worker import set_one_thread
from evopop.seeding import derive_seed

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
EVAL = 64
FRESH = 50
SELECTION_EPISODES = 32
FRESH_KEY = 12  # derive_seed(seed, generation, FRESH_KEY): this study's fresh episodes
COUNT = {  # the CI recall test's settings on a graded memory task (random ~0.45, solved 1)
    "env": {"id": "evopop/CountEvents-v0", "num_envs": 8},
    "net": {"cell": "lstm", "hidden_size": 32, "head": [32]},
    "ppo": {"lr": 3e-3, "learn_step": 32, "batch_size": 128, "update_epochs": 4,
            "max_seq_len": 16, "ent_coef": 0.01},
    "evolution": {"population_size": 4, "evo_steps": 4096},
}
TASKS: dict[str, Callable[[int], RunConfig]] = {
    # the bundled configs, shortened, no target (every run spends its budget)
    "pendulum": lambda seed: load_config(CONFIGS / "pendulum_novel.yaml", {
        "seed": seed, "max_steps": 6 * 8192, "evolution.target": None}),
    "cartpole": lambda seed: load_config(CONFIGS / "cartpole_novel.yaml", {
        "seed": seed, "max_steps": 6 * 10240, "evolution.target": None}),
    "count": lambda seed: parse_config({**COUNT, "seed": seed, "max_steps": 8 * 4096}),
}
MODES = {f"eval-{k}": k for k in (3, 10, 32, 64)}
TRAIN = "train"


@dataclass
class Row:
    """One member after one generation's training."""

    task: str
    seed: int
    generation: int
    slot: int
    train: float | None
    evals: list[float]
    fresh_mean: float
    fresh_std: float

    def fitness(self, mode: str) -> float:
        """The member's fitness under `mode` (train falls back to eval-10, as a run does)."""
        if mode == TRAIN:
            return self.train if self.train is not None else float(np.mean(self.evals[:10]))
        return float(np.mean(self.evals[:MODES[mode]]))

    @property
    def fresh_se(self) -> float:
        return self.fresh_std / math.sqrt(FRESH)


def _fresh_start(config: RunConfig, generation: int, generations: int) -> int:
    taken = [(s, s + EVAL) for s in (eval_seed(config, g) for g in range(generations))]
    return disjoint_start(derive_seed(config.seed, generation, FRESH_KEY), FRESH, taken)


def run_task(task: str, seed: int, workers: int) -> list[Row]:
    """One population on `task`: trained with `fitness: train` (no evaluation in the workers),
    selected on eval-32 computed here, every member scored every way."""
    config = TASKS[task](seed).model_copy(update={"fitness": FitnessMode.TRAIN,
                                                   "eval_episodes": 10})
    generations = math.ceil(config.max_steps / config.population().evo_steps)
    eval_envs = make_vec_env(eval_env_spec(config.env, EVAL))
    fresh_envs = make_vec_env(eval_env_spec(config.env, FRESH))
    rows: list[Row] = []
    backend = make_backend(Placement.PROCESSES, workers)
    with Population(config, backend) as population:
        while True:
            population.train()
            g = population.generation
            for slot, (member, result) in enumerate(zip(population.members,
                                                        population.last_results, strict=True)):
                evals = evaluate(member.agent, eval_envs, EVAL, eval_seed(config, g))
                fresh = evaluate(member.agent, fresh_envs, FRESH,
                                 _fresh_start(config, g, generations))
                rows.append(Row(task, seed, g, slot, result.train_return,
                                evals.returns.tolist(), fresh.mean, fresh.std))
                member.fitness[-1] = float(np.mean(evals.returns[:SELECTION_EPISODES]))
            if all(m.env_steps >= config.max_steps for m in population.members):
                break
            population.select()
            population.mutate()
    eval_envs.close()
    fresh_envs.close()
    return rows


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (for Spearman's correlation)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    if np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _in_se(diff: float, se: float) -> float | None:
    """`diff` in units of `se`; None where that is undefined (no spread, yet a gap)."""
    if se > 0:
        return diff / se
    return 0.0 if diff == 0 else None


def _elites(rows: Sequence[Row], mode: str) -> list[tuple[Row, float]]:
    """Per (task, seed, generation): the member `mode` picks (first of equals, as
    `elite_index`) and the best fresh return among its population."""
    cells: dict[tuple[str, int, int], list[Row]] = {}
    for r in rows:
        cells.setdefault((r.task, r.seed, r.generation), []).append(r)
    return [(members[int(np.argmax([m.fitness(mode) for m in members]))],
             max(m.fresh_mean for m in members)) for members in cells.values()]


def _gaps(rows: Sequence[Row], mode: str) -> dict[str, float]:
    elites = _elites(rows, mode)
    gaps = [_in_se(e.fitness(mode) - e.fresh_mean, e.fresh_se) for e, _ in elites]
    defined = np.array([g for g in gaps if g is not None])
    regrets = [_in_se(best - e.fresh_mean, e.fresh_se) for e, best in elites]
    return {"gap_se": float(np.mean(defined)), "gap_se_median": float(np.median(defined)),
            "over_1se": float(np.mean(defined > 1.0)),
            "picks_best": float(np.mean([e.fresh_mean == best for e, best in elites])),
            "regret_se": float(np.mean([r for r in regrets if r is not None])),
            "gap": float(np.mean([e.fitness(mode) - e.fresh_mean for e, _ in elites])),
            "elites": len(elites), "undefined": len(gaps) - len(defined)}


def summarise(rows: Sequence[Row], mode: str) -> dict[str, float]:
    """One task: the mode's correlations with the fresh return over every member and
    generation, and its elites' gaps, pick rate and regret."""
    fitness = np.array([r.fitness(mode) for r in rows])
    fresh = np.array([r.fresh_mean for r in rows])
    return {"pearson": _correlation(fitness, fresh),
            "spearman": _correlation(_ranks(fitness), _ranks(fresh)), **_gaps(rows, mode)}


def pooled(rows: Sequence[Row], mode: str, tasks: Sequence[str]) -> dict[str, float]:
    """Every task: gaps and picks over all elites (SE units are comparable across tasks), the
    correlations as the mean of the per-task ones (return scales are not)."""
    each = [summarise([r for r in rows if r.task == t], mode) for t in tasks]
    gaps = _gaps(rows, mode)
    del gaps["gap"]  # return units differ between tasks
    return {"pearson": float(np.mean([e["pearson"] for e in each])),
            "spearman": float(np.mean([e["spearman"] for e in each])), **gaps}


def table(rows: Sequence[Row]) -> tuple[str, dict[str, Any]]:
    """The markdown table (task x mode, then all tasks) and the same as JSON."""
    tasks = sorted({r.task for r in rows}, key=list(TASKS).index)
    lines = ["| task | fitness | pearson | spearman | elite gap (SE) mean / median | "
             "elite gap (return) | elites > 1 SE | picks best fresh | regret (SE) |",
             "|---" * 9 + "|"]
    out: dict[str, Any] = {}
    for task in [*tasks, "all"]:
        for mode in [*MODES, TRAIN]:
            if task == "all":
                s = pooled(rows, mode, tasks)
            else:
                s = summarise([r for r in rows if r.task == task], mode)
            out[f"{task}/{mode}"] = s
            undefined = f" ({s['undefined']} undefined)" if s["undefined"] else ""
            gap = f"{s['gap']:+.3g}" if "gap" in s else "—"
            lines.append(f"| {task} | {mode} | {s['pearson']:.3f} | {s['spearman']:.3f} | "
                         f"{s['gap_se']:+.2f} / {s['gap_se_median']:+.2f}{undefined} | "
                         f"{gap} | {100 * s['over_1se']:.0f}% | "
                         f"{100 * s['picks_best']:.0f}% | {s['regret_se']:.2f} |")
    return "\n".join(lines), out


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the member workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/fitness_study.json"))
    parser.add_argument("--load", type=Path, nargs="*", default=[],
                        help="rows of earlier runs (their --out files) to analyse with these")
    args = parser.parse_args()
    set_one_thread()
    rows = [Row(**r) for path in args.load for r in json.loads(path.read_text())]
    for task in args.tasks:
        for seed in args.seeds:
            wall, cpu = time.perf_counter(), _cpu_s()
            rows += run_task(task, seed, args.workers)
            print(f"{task} seed {seed}: {time.perf_counter() - wall:.0f} s wall, "
                  f"{_cpu_s() - cpu:.0f} s CPU", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([r.__dict__ for r in rows]))
    text, summary = table(rows)
    print(text)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
