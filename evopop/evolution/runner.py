"""An evolutionary run from a config into a run directory, fresh or resumed.

Run directory: `config.yaml` (resolved), `metrics.jsonl` (one line per generation),
`lineage.jsonl` (one line per new member), `checkpoint.safetensors` (the whole run, rewritten
atomically each generation), `elite.safetensors` (an agent file) and `summary.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from evopop.agents import Agent
from evopop.agents.checkpoint import atomic_write_bytes, load_agent, weights_sha256
from evopop.config import RunConfig, dump_config
from evopop.envs import make_env
from evopop.errors import UserError
from evopop.evolution.backends import make_backend
from evopop.evolution.loop import (
    LoopSettings,
    Stream,
    initial_members,
    json_number,
    lineage_line,
    run_generations,
)
from evopop.evolution.population import LoopState, load_state, save_state
from evopop.evolution.tracking import WandbLogger
from evopop.rundir import (
    CHECKPOINT_FILE,
    ELITE_FILE,
    LINEAGE_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    prepare_fresh,
)
from evopop.seeding import derive_seed


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says how to continue it."""


def settings(config: RunConfig) -> LoopSettings:
    evo = config.evolution
    if evo is None:
        raise ValueError("the config has no evolution section")
    return LoopSettings(
        seed=config.seed, env=config.env,
        eval_env=config.env.with_copies(min(evo.eval_loop, 16)), ray=config.ray,
        evo_steps=evo.evo_steps,
        max_steps=config.max_steps, eval_loop=evo.eval_loop,
        tournament_size=evo.tournament_size, elitism=evo.elitism, target=evo.target,
        mutation=evo.mutation)


def initial_state(config: RunConfig) -> LoopState:
    """Generation 0: `population_size` agents from the config's spec and hyperparameters."""
    evo = config.evolution
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


def _generation_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["generation"])
    except (ValueError, KeyError, TypeError):
        return None  # a line torn by a kill mid-write


def _truncate_logs(run_dir: Path, state: LoopState) -> None:
    """Drops log lines the checkpoint does not account for (a kill mid-generation).

    The checkpoint holds generation G still to run: metrics of generations < G and lineage of
    members born up to G stay. A finished run's checkpoint already holds its last generation.
    """
    limits = {METRICS_FILE: state.generation + int(state.finished),
              LINEAGE_FILE: state.generation + 1}
    for name, limit in limits.items():
        path = run_dir / name
        if path.exists():
            keep = [line for line in path.read_text().splitlines()
                    if (g := _generation_of(line)) is not None and g < limit]
            atomic_write_bytes(path, "".join(f"{line}\n" for line in keep).encode())


def _table_line(record: dict[str, Any]) -> str:
    fits = " ".join(f"{m['fitness']:9.1f}" for m in record["members"])
    return (f"gen {record['generation']:4d} | steps {record['total_env_steps']:>10,d} | "
            f"elite {record['elite_fitness']:9.1f} | best {record['best_fitness']:9.1f} | "
            f"{record['steps_per_s'] or 0:8.0f} steps/s | {fits}")


def summarise(state: LoopState, run_dir: Path) -> dict[str, Any]:
    """`best_fitness` is the best elite fitness of any generation; `elite_fitness` and the elite
    file are the last generation's elite."""
    elite = load_agent(run_dir / ELITE_FILE)
    return {
        "target_reached": state.target_reached,
        "best_fitness": json_number(state.best_fitness),
        "elite_fitness": json_number(state.elite_history[-1]),
        "generations": len(state.elite_history),
        "total_env_steps": state.total_env_steps,
        "wall_s": round(state.wall_s, 3),
        "elite_sha256": weights_sha256(elite),
    }


def _start(config: RunConfig, run_dir: Path, resume: bool, overwrite: bool) -> LoopState:
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if resume:
        if not checkpoint_path.is_file():
            raise UserError(f"nothing to resume: {checkpoint_path} does not exist")
        state = load_state(checkpoint_path)
        _truncate_logs(run_dir, state)
        return state
    prepare_fresh(run_dir, dump_config(config), overwrite)
    state = initial_state(config)
    with (run_dir / LINEAGE_FILE).open("w") as lineage:
        for member in state.members:
            lineage.write(json.dumps(lineage_line(member, 0)) + "\n")
    return state


def run_evolution(
    config: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True,
    workers: int | None = None, wandb: bool = False, overwrite: bool = False,
) -> dict[str, Any]:
    """Runs (or continues) an evolutionary run; returns the summary written to `summary.json`."""
    checkpoint_path = run_dir / CHECKPOINT_FILE
    state = _start(config, run_dir, resume, overwrite)
    s = settings(config)
    total = config.max_steps * len(state.members)
    bar = tqdm(total=total, initial=min(state.total_env_steps, total), unit="step",
               disable=not progress, dynamic_ncols=True)

    tracker = WandbLogger(run_dir, config.model_dump(mode="json"), run_dir.name) if wandb else None

    def on_generation(st: LoopState, record: dict[str, Any]) -> None:
        bar.update(min(st.total_env_steps, total) - bar.n)
        bar.set_postfix(elite=f"{record['elite_fitness']:.1f}")
        if progress:
            bar.write(_table_line(record))
        if tracker is not None:
            tracker.log(record)

    backend = make_backend(config.backend, workers or config.workers, config.ray,
                           config.ray_env_worker_cpus())
    aborted = True
    try:
        if not state.finished:
            state = run_generations(state, s, backend, run_dir,
                                    lambda st: save_state(checkpoint_path, st), on_generation)
        aborted = False
    except KeyboardInterrupt:
        if not checkpoint_path.exists():
            raise RunInterrupted("interrupted before the first generation finished") from None
        raise RunInterrupted(f"interrupted; the last finished generation is saved: "
                             f"evopop train --resume {run_dir}") from None
    finally:
        backend.close(abort=aborted)
        bar.close()
        if tracker is not None:
            tracker.close()
    summary = summarise(state, run_dir)
    atomic_write_bytes(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2).encode())
    return summary
