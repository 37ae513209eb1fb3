"""Runs a planned sweep: every run an evolutionary run in its own directory, runs spread over
worker processes, finished runs skipped on resume, reports rewritten at the end."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from evopop.atomic import atomic_write_bytes
from evopop.config import RunConfig, dump_config
from evopop.envs import make_env
from evopop.errors import UserError
from evopop.evolution.selection import PopulationDiverged
from evopop.execution.cluster import connect
from evopop.execution.inline import InlinePool
from evopop.execution.placement import Placement
from evopop.execution.pool import WorkerPool, default_workers
from evopop.execution.processes import ProcessPool
from evopop.execution.tasks import map_tasks
from evopop.execution.worker import stateless
from evopop.records import RunSummary
from evopop.rundir import CONFIG_FILE, RunDir
from evopop.sweep.report import run_row, write_reports
from evopop.sweep.spec import PlannedRun, SweepPlan, load_sweep
from evopop.training import run_training

RUNS_DIR = "runs"
SWEEP_RECORD = "sweep.yaml"
OnDone = Callable[[PlannedRun, RunSummary], None]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; the message says how to continue it."""


class RunStatus(str, Enum):
    """Where a run stands in an existing output directory."""

    FINISHED = "finished"  # summary.json: read its results
    STARTED = "started"  # a checkpoint but no summary: continue it
    NEW = "new"  # nothing usable: start fresh


def run_status(run_dir: Path) -> RunStatus:
    run = RunDir(run_dir)
    if run.summary.is_file():
        return RunStatus.FINISHED
    if run.checkpoint.is_file():
        return RunStatus.STARTED
    return RunStatus.NEW


def execute_run(config: RunConfig, run_dir: Path, resume: bool) -> RunSummary:
    """One evolutionary run, members one at a time (the sweep parallelises across runs).

    A run whose whole population diverges is a result, not a sweep failure: it is recorded as
    finished and unsolved (diverging is deterministic, so retrying it would only diverge again).
    """
    try:
        return run_training(config, run_dir, resume=resume, progress=False, parallel_members=1,
                             overwrite=not resume)
    except PopulationDiverged:
        run = RunDir(run_dir)
        metrics = run.generations()
        last = metrics[-1] if metrics else None
        summary = RunSummary(target_reached=False, best_fitness=-math.inf,
                             elite_fitness=-math.inf, generations=len(metrics),
                             total_env_steps=last.total_env_steps if last else 0,
                             wall_s=last.wall_s if last else 0.0, elite_sha256=None,
                             diverged=True)
        run.write_summary(summary)
        return summary


def _pool_run(task: tuple[RunConfig, Path]) -> RunSummary:
    """One (config, run dir) in a pool worker. A run re-sent after its worker died finds it
    finished (the summary is returned) or checkpointed (the run continues), not started over."""
    config, run_dir = task
    status = run_status(run_dir)
    if status is RunStatus.FINISHED:
        return RunDir(run_dir).read_summary()
    return execute_run(config, run_dir, status is RunStatus.STARTED)


def _sweep_pool(todo: Sequence[PlannedRun], parallel_runs: int, backend: Placement,
                ray_address: str | None) -> WorkerPool:
    """In this process (one worker), spawned non-daemonic processes (so a run may use
    subprocess `async` envs), or one Ray actor per run reserving what its config's `ray`
    section says (Ray decides how many run at once)."""
    if backend is Placement.RAY:
        from evopop.execution.ray_pool import RayPool, Reservation

        owns = connect(ray_address)
        reservations = [Reservation(cpus=run.config.ray.num_cpus_per_member
                                    + run.config.ray_env_worker_cpus(),
                                    gpus=run.config.ray.num_gpus_per_member,
                                    resources=run.config.ray.resources_per_member)
                        for run in todo]
        return RayPool([stateless(_pool_run)] * len(todo), reservations, owns)
    if parallel_runs == 1:
        return InlinePool([stateless(_pool_run)])
    return ProcessPool([stateless(_pool_run)] * parallel_runs, name="evopop-sweep")


def _run_pool(todo: Sequence[PlannedRun], out_dir: Path, pool: WorkerPool,
              on_done: OnDone) -> None:
    """Every run on `pool`; on Ctrl-C or a failed run the pool is killed, which stops the
    other runs at their last checkpoint (what `--resume` continues from)."""
    tasks = [(run.config, (out_dir / RUNS_DIR / run.name).resolve()) for run in todo]
    try:
        map_tasks(pool, tasks, "sweep run", lambda i, summary: on_done(todo[i], summary))
    finally:
        pool.close()


def _check_out_dir(out_dir: Path, resume: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a directory")
    if not resume and out_dir.is_dir() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir} is not empty; continue that sweep with --resume, "
                        f"or choose another output directory")


def _check_same_config(run: PlannedRun, run_dir: Path) -> None:
    """A resumed sweep must give each existing run the config it was started with."""
    path = run_dir / CONFIG_FILE
    if path.is_file() and path.read_text() != dump_config(run.config):
        raise UserError(f"{path} differs from the config this sweep now gives run {run.name} "
                        f"(changed base, set or grid?); use another output directory")


def _check_envs(plan: SweepPlan) -> None:
    """Builds each distinct env once, so a bad env id fails before any training."""
    seen = set()
    for run in plan.runs:
        env = run.config.env
        key = json.dumps([env.id, env.wrappers, env.kwargs, env.packages], default=str)
        if key not in seen:
            seen.add(key)
            make_env(env).close()


def _note(plan: SweepPlan) -> str:
    targets = sorted({str(r.config.evolution.target) for r in plan.runs
                      if r.config.evolution.target is not None})
    target = f"target {' / '.join(targets)}" if targets else "no target"
    return (f"{len(plan.runs)} runs: {len(plan.settings)} settings × seeds {list(plan.seeds)}; "
            f"{target}. Ranked by seeds solved (desc), then mean env steps "
            f"to target (asc), then the IQM of best elite fitness (desc). ± is the sample std "
            f"over seeds; steps to target average the seeds that reached it.")


def run_plan(plan: SweepPlan, out_dir: Path, parallel_runs: int | None = None,
             resume: bool = False,
             progress: bool = True, backend: Placement = Placement.PROCESSES,
             ray_address: str | None = None) -> list[dict[str, Any]]:
    """Runs (or continues) every run of `plan` into `out_dir`; returns one row per run, in plan
    order, as written to results.csv. With the Ray backend (a local Ray, or the cluster at
    `ray_address`), Ray decides how many runs execute at once and `parallel_runs` is not used."""
    out_dir = Path(out_dir)
    if parallel_runs is not None and parallel_runs < 1:
        raise UserError(f"parallel_runs must be a positive integer, got {parallel_runs}")
    _check_out_dir(out_dir, resume)
    _check_envs(plan)
    for run in plan.runs:  # every check before the first write: a refused resume changes nothing
        _check_same_config(run, out_dir / RUNS_DIR / run.name)
    atomic_write_bytes(out_dir / SWEEP_RECORD, yaml.safe_dump(plan.spec, sort_keys=False).encode())
    rows: dict[str, dict[str, Any]] = {}

    def done(run: PlannedRun, summary: RunSummary, how: str = "") -> None:
        run_dir = RunDir(out_dir / RUNS_DIR / run.name)
        rows[run.name] = run_row(dict(zip(plan.keys, run.setting, strict=True)), run.seed,
                                 summary, run_dir.generations(),
                                 run.config.evolution.target, f"{RUNS_DIR}/{run.name}")
        if progress:
            best = summary.best_fitness
            print(f"[{len(rows)}/{len(plan.runs)}] {plan.label(run.setting)} seed {run.seed}: "
                  f"best {f'{best:.1f}' if math.isfinite(best) else 'diverged'}, "
                  f"{summary.wall_s:.1f} s{how}", file=sys.stderr, flush=True)

    todo = []
    for run in plan.runs:
        run_dir = out_dir / RUNS_DIR / run.name
        status = run_status(run_dir)
        if status is RunStatus.FINISHED:
            done(run, RunDir(run_dir).read_summary(), " (already finished)")
        else:
            todo.append(run)  # a started run continues from its checkpoint (`_pool_run`)
    parallel_runs = min(parallel_runs or default_workers(), max(len(todo), 1))
    try:
        _run_pool(todo, out_dir, _sweep_pool(todo, parallel_runs, Placement(backend), ray_address),
                  done)
    except KeyboardInterrupt:
        raise SweepInterrupted(f"interrupted; finished runs and the last generation of the "
                               f"others are kept: continue with --resume ({out_dir})") from None
    ordered = [rows[run.name] for run in plan.runs]
    write_reports(out_dir, ordered, plan.keys, plan.label, plan.name, _note(plan))
    return ordered


def default_out_dir(sweep_path: Path) -> Path:
    """runs/<sweep file stem>, as `evopop train` puts runs under runs/."""
    return Path(RUNS_DIR) / Path(sweep_path).stem


def run_sweep(sweep_path: Path, out_dir: Path | None = None, parallel_runs: int | None = None,
              resume: bool = False, progress: bool = True,
              backend: Placement = Placement.PROCESSES,
              ray_address: str | None = None) -> list[dict[str, Any]]:
    """Plans the sweep file (every run's config validated first) and runs it; see `run_plan`."""
    plan = load_sweep(Path(sweep_path))
    return run_plan(plan, out_dir or default_out_dir(sweep_path), parallel_runs, resume, progress,
                    backend, ray_address)
