"""A run from a config into a run directory (see `evopop.rundir`), fresh or resumed.

There is one training path: a config without an `evolution` section trains a single agent as a
population of one without selection or mutation (`RunConfig.population`), so it gets the same
records, elite file, `--resume`, trackers (`--wandb`, `--tensorboard`) and plots as an
evolutionary run.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from evopop.agents.checkpoint import load_agent, weights_sha256
from evopop.agents.device import resolve_device
from evopop.config import RunConfig, dump_config
from evopop.errors import UserError
from evopop.evolution.backends import Backend, make_backend
from evopop.evolution.engine import WORKER_MODULES
from evopop.evolution.fresh import fresh_return, fresh_task
from evopop.evolution.loop import Population, initial_state, lineage_record, run_generations
from evopop.evolution.population import LoopState, load_state, save_state
from evopop.evolution.tensorboard_tracker import check_log_dir, log_dir, open_tensorboard
from evopop.evolution.tracking import Tracker, Trackers, generation_point
from evopop.evolution.wandb_tracker import WandbTracker
from evopop.execution.processes import start_fork_server
from evopop.records import FreshReturn, GenerationRecord, RunSummary
from evopop.rundir import RunDir


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says how to continue it."""



def _truncate_logs(run_dir: RunDir, state: LoopState) -> None:
    """Drops log lines the checkpoint does not account for (a kill mid-generation).

    The checkpoint holds generation G still to run: metrics of generations < G and lineage of
    members born up to G stay. A finished run's checkpoint already holds its last generation.
    """
    run_dir.truncate_logs(metrics_before=state.generation + int(state.finished),
                          lineage_before=state.generation + 1)


def _table_line(record: GenerationRecord) -> str:
    fits = " ".join(f"{m.fitness:9.1f}" for m in record.members)
    return (f"gen {record.generation:4d} | steps {record.total_env_steps:>10,d} | "
            f"elite {record.elite_fitness:9.1f} | best {record.best_fitness:9.1f} | "
            f"{record.steps_per_s or 0:8.0f} steps/s | {fits}")


def summarise(config: RunConfig, state: LoopState, run_dir: RunDir,
              fresh: FreshReturn | None) -> RunSummary:
    """`best_fitness` is the best elite fitness of any generation; `elite_fitness` and the elite
    file are the last generation's elite, and `elite_fresh` (`fresh`) is that elite on fresh
    episodes."""
    elite = load_agent(run_dir.elite, resolve_device(config.device))
    return RunSummary(
        target_reached=state.target_reached, best_fitness=state.best_fitness,
        elite_fitness=state.elite_history[-1], generations=len(state.elite_history),
        total_env_steps=state.total_env_steps, wall_s=round(state.wall_s, 3),
        elite_sha256=weights_sha256(elite), elite_fresh=fresh)


def _elite_fresh(config: RunConfig, state: LoopState, run_dir: RunDir,
                 backend: Backend) -> FreshReturn | None:
    """The final elite on fresh episodes, played by the backend's workers."""
    task = fresh_task(config, run_dir.elite.read_bytes(), len(state.elite_history),
                      str(resolve_device(config.device)))
    return None if task is None else fresh_return(task, backend.map([task])[0])


def summary_line(summary: RunSummary) -> str:
    """The elite in words: its selection fitness and, where played, its fresh-episode return
    (what it can be expected to score)."""
    line = f"elite: fitness {summary.elite_fitness:.2f} (selection)"
    fresh = summary.elite_fresh
    if fresh is not None:
        line += (f"; fresh {fresh.mean:.2f} ± {fresh.std:.2f} over {fresh.episodes} new "
                 f"episodes (seeds {fresh.first_seed}..)")
    return line


def _start(config: RunConfig, run_dir: RunDir, resume: bool, overwrite: bool) -> LoopState:
    if resume:
        if not run_dir.checkpoint.is_file():
            raise UserError(f"nothing to resume: {run_dir.checkpoint} does not exist")
        state = load_state(run_dir.checkpoint)
        _truncate_logs(run_dir, state)
        return state
    state = initial_state(config)  # first: a config that cannot fit writes nothing
    run_dir.prepare_fresh(dump_config(config), overwrite)
    run_dir.append_lineage(lineage_record(member, 0) for member in state.members)
    return state


def _trackers(config: RunConfig, run_dir: RunDir, events: Path | None, state: LoopState,
              resume: bool, wandb: bool) -> Trackers:
    """The trackers this run logs to: wandb when asked, TensorBoard when `events` is its log
    directory."""
    hp_names = tuple(config.population().mutation.hp_space)
    active: list[Tracker] = []
    if wandb:
        active.append(WandbTracker(run_dir.path, config.model_dump(mode="json"),
                                   run_dir.path.name))
    if events is not None:
        active.append(open_tensorboard(
            events, resume, state.total_env_steps,
            lambda: [generation_point(r, hp_names) for r in run_dir.generations()]))
    return Trackers(hp_names, active)


def run_training(
    config: RunConfig, run_path: Path, resume: bool = False, progress: bool = True,
    parallel_members: int | None = None, wandb: bool = False, overwrite: bool = False,
) -> RunSummary:
    """Runs (or continues) a run, evolutionary or single-agent; returns the summary written to
    `summary.json`."""
    resolve_device(config.device)  # a device this machine lacks fails before the run dir is touched
    run_dir = RunDir(Path(run_path))
    events = log_dir(config.tensorboard, run_dir)
    if events is not None:  # checked before the run dir is touched
        check_log_dir(events, resume, overwrite)
    workers = config.member_workers(parallel_members)
    if config.forks_workers(parallel_members):
        start_fork_server(WORKER_MODULES)  # its imports overlap the population's set-up
    state = _start(config, run_dir, resume, overwrite)
    trackers = _trackers(config, run_dir, events, state, resume, wandb)
    total = config.max_steps * len(state.members)
    bar = tqdm(total=total, initial=min(state.total_env_steps, total), unit="step",
               disable=not progress, dynamic_ncols=True)

    def on_generation(st: LoopState, record: GenerationRecord) -> None:
        bar.update(min(st.total_env_steps, total) - bar.n)
        bar.set_postfix(elite=f"{record.elite_fitness:.1f}")
        if progress:
            bar.write(_table_line(record))
        trackers.log(record)

    backend = make_backend(config.backend, workers, config.ray, config.ray_env_worker_cpus(),
                           config.engine)
    aborted = True
    try:
        if not state.finished:
            state = run_generations(Population(config, backend, state), run_dir,
                                    lambda st: save_state(run_dir.checkpoint, st), on_generation)
        fresh = _elite_fresh(config, state, run_dir, backend)
        aborted = False
    except KeyboardInterrupt:
        if not run_dir.checkpoint.exists():
            raise RunInterrupted("interrupted before the first generation finished") from None
        raise RunInterrupted(f"interrupted; the last finished generation is saved: "
                             f"evopop train --resume {run_dir.path}") from None
    finally:
        backend.close(abort=aborted)
        bar.close()
        trackers.close()
    summary = summarise(config, state, run_dir, fresh)
    run_dir.write_summary(summary)
    return summary
