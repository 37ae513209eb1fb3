"""A run from a config into a run directory (see `evopop.rundir`), fresh or resumed.

There is one training path: a config without an `evolution` section trains a single agent as a
population of one without selection or mutation (`evolution_of`), so it gets the same records,
elite file, `--resume`, `--wandb` and plots as an evolutionary run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evopop.agents import Agent
from evopop.agents.checkpoint import load_agent, weights_sha256
from evopop.config import EvolutionConfig, RunConfig, dump_config
from evopop.envs import make_env
from evopop.errors import UserError
from evopop.evolution.backends import default_workers, make_backend
from evopop.evolution.loop import (
    LoopSettings,
    Stream,
    initial_members,
    lineage_record,
    run_generations,
)
from evopop.evolution.population import LoopState, load_state, save_state
from evopop.evolution.settings import NO_MUTATION
from evopop.evolution.tracking import WandbLogger
from evopop.execution.placement import Placement
from evopop.records import GenerationRecord, RunSummary
from evopop.rundir import RunDir
from evopop.seeding import derive_seed

POINTS_PER_SINGLE_RUN = 20  # a single agent logs (and is evaluated) about this often


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says how to continue it."""



def single_agent_evo_steps(config: RunConfig) -> int:
    """A single agent's generation: whole rollouts, about 1/20 of the budget (at least one).

    Each generation ends with an evaluation and a metrics line, so the run logs about 20 points
    of its learning curve; the last generation may pass `max_steps` by fewer than a generation's
    rollouts, as in any evolutionary run.
    """
    rollout = config.ppo.learn_step * config.env.num_envs
    rollouts = math.ceil(config.max_steps / rollout)
    return rollout * max(1, rollouts // POINTS_PER_SINGLE_RUN)


def evolution_of(config: RunConfig) -> EvolutionConfig:
    """The config's evolution section, or the one a single agent implies: one member, always
    the elite, never mutated, evaluated on `eval_episodes` episodes, no target."""
    if config.evolution is not None:
        return config.evolution
    return EvolutionConfig(population_size=1, tournament_size=1, elitism=True,
                           evo_steps=single_agent_evo_steps(config),
                           eval_loop=config.eval_episodes, target=None, random_init_hp=False,
                           mutation=NO_MUTATION)


def settings(config: RunConfig) -> LoopSettings:
    evo = evolution_of(config)
    return LoopSettings(
        seed=config.seed, env=config.env,
        eval_env=config.env.with_copies(min(evo.eval_loop, 16)), ray=config.ray,
        evo_steps=evo.evo_steps,
        max_steps=config.max_steps, eval_loop=evo.eval_loop,
        tournament_size=evo.tournament_size, elitism=evo.elitism, target=evo.target,
        mutation=evo.mutation)


def initial_state(config: RunConfig) -> LoopState:
    """Generation 0: `population_size` agents from the config's spec and hyperparameters."""
    evo = evolution_of(config)
    env = make_env(config.env)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    hp_rng = np.random.default_rng(derive_seed(config.seed, 0, 0, Stream.INIT_HP))
    space = evo.mutation.hp_space
    agents = []
    for slot in range(evo.population_size):
        params = space.sample_params(config.ppo, hp_rng) if evo.random_init_hp else config.ppo
        seed = derive_seed(config.seed, 0, slot, Stream.INIT_WEIGHTS)
        agents.append(Agent(obs_space, act_space, config.net, params, seed=seed))
    return LoopState(generation=0, next_id=len(agents), members=initial_members(agents))


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


def summarise(state: LoopState, run_dir: RunDir) -> RunSummary:
    """`best_fitness` is the best elite fitness of any generation; `elite_fitness` and the elite
    file are the last generation's elite."""
    return RunSummary(
        target_reached=state.target_reached, best_fitness=state.best_fitness,
        elite_fitness=state.elite_history[-1], generations=len(state.elite_history),
        total_env_steps=state.total_env_steps, wall_s=round(state.wall_s, 3),
        elite_sha256=weights_sha256(load_agent(run_dir.elite)))


def _start(config: RunConfig, run_dir: RunDir, resume: bool, overwrite: bool) -> LoopState:
    if resume:
        if not run_dir.checkpoint.is_file():
            raise UserError(f"nothing to resume: {run_dir.checkpoint} does not exist")
        state = load_state(run_dir.checkpoint)
        _truncate_logs(run_dir, state)
        return state
    run_dir.prepare_fresh(dump_config(config), overwrite)
    state = initial_state(config)
    run_dir.append_lineage(lineage_record(member, 0) for member in state.members)
    return state


def _workers(config: RunConfig, workers: int | None, members: int) -> int | None:
    """Local workers beyond the population would idle; Ray decides for itself when unset."""
    workers = workers or config.workers
    if config.backend is Placement.RAY and workers is None:
        return None
    return min(workers or default_workers(), members)


def run_training(
    config: RunConfig, run_path: Path, resume: bool = False, progress: bool = True,
    workers: int | None = None, wandb: bool = False, overwrite: bool = False,
) -> RunSummary:
    """Runs (or continues) a run, evolutionary or single-agent; returns the summary written to
    `summary.json`."""
    run_dir = RunDir(Path(run_path))
    state = _start(config, run_dir, resume, overwrite)
    s = settings(config)
    total = config.max_steps * len(state.members)
    bar = tqdm(total=total, initial=min(state.total_env_steps, total), unit="step",
               disable=not progress, dynamic_ncols=True)

    tracker = WandbLogger(run_dir.path, config.model_dump(mode="json"),
                          run_dir.path.name) if wandb else None

    def on_generation(st: LoopState, record: GenerationRecord) -> None:
        bar.update(min(st.total_env_steps, total) - bar.n)
        bar.set_postfix(elite=f"{record.elite_fitness:.1f}")
        if progress:
            bar.write(_table_line(record))
        if tracker is not None:
            tracker.log(record)

    backend = make_backend(config.backend, _workers(config, workers, len(state.members)),
                           config.ray, config.ray_env_worker_cpus())
    aborted = True
    try:
        if not state.finished:
            state = run_generations(state, s, backend, run_dir,
                                    lambda st: save_state(run_dir.checkpoint, st), on_generation)
        aborted = False
    except KeyboardInterrupt:
        if not run_dir.checkpoint.exists():
            raise RunInterrupted("interrupted before the first generation finished") from None
        raise RunInterrupted(f"interrupted; the last finished generation is saved: "
                             f"evopop train --resume {run_dir.path}") from None
    finally:
        backend.close(abort=aborted)
        bar.close()
        if tracker is not None:
            tracker.close()
    summary = summarise(state, run_dir)
    run_dir.write_summary(summary)
    return summary
