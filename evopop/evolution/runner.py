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
from evopop.config import RunConfig, dump_config, load_config
from evopop.envs import make_env
from evopop.errors import UserError
from evopop.evolution.backends import make_backend
from evopop.evolution.loop import ELITE_FILE, LoopSettings, initial_members, run_generations
from evopop.evolution.population import LoopState, load_state, save_state
from evopop.evolution.task import EnvSpec
from evopop.evolution.tracking import WandbLogger
from evopop.seeding import derive_seed

CHECKPOINT_FILE = "checkpoint.safetensors"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says how to continue it."""
_INIT_STREAM = 99


def _env_spec(config: RunConfig, num_envs: int) -> EnvSpec:
    env = config.env
    return EnvSpec(env.id, num_envs, env.vectorization.value, tuple(env.wrappers),
                   tuple(sorted(env.kwargs.items())), tuple(env.packages))


def settings(config: RunConfig) -> LoopSettings:
    evo = config.evolution
    if evo is None:
        raise ValueError("the config has no evolution section")
    return LoopSettings(
        seed=config.seed, env=_env_spec(config, config.env.num_envs),
        eval_env=_env_spec(config, min(evo.eval_loop, 16)), evo_steps=evo.evo_steps,
        max_steps=config.max_steps, eval_loop=evo.eval_loop,
        tournament_size=evo.tournament_size, elitism=evo.elitism, target=evo.target,
        mutation=evo.mutation.build(), env_id=config.env.id)


def initial_state(config: RunConfig) -> LoopState:
    """Generation 0: `population_size` agents from the config's spec and hyperparameters."""
    evo = config.evolution
    env = make_env(config.env.id, config.env.wrappers, config.env.kwargs, config.env.packages)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    hp_rng = np.random.default_rng(derive_seed(config.seed, 0, 0, _INIT_STREAM))
    space = evo.mutation.build().hp_space
    agents = []
    for slot in range(evo.population_size):
        params = space.sample_params(config.ppo, hp_rng) if evo.random_init_hp else config.ppo
        seed = derive_seed(config.seed, 0, slot, _INIT_STREAM + 1)
        agents.append(Agent(obs_space, act_space, config.net, params, seed=seed))
    return LoopState(generation=0, next_id=len(agents), members=initial_members(agents))


def _truncate_logs(run_dir: Path, generation: int) -> None:
    """Drops log lines of generations the checkpoint does not contain (a kill mid-generation)."""
    for name in ("metrics.jsonl", "lineage.jsonl"):
        path = run_dir / name
        if path.exists():
            keep = [line for line in path.read_text().splitlines()
                    if json.loads(line)["generation"] < generation
                    or (name == "lineage.jsonl" and json.loads(line)["generation"] == generation)]
            atomic_write_bytes(path, "".join(f"{line}\n" for line in keep).encode())


def _table_line(record: dict[str, Any]) -> str:
    fits = " ".join(f"{m['fitness']:9.1f}" for m in record["members"])
    return (f"gen {record['generation']:4d} | steps {record['total_env_steps']:>10,d} | "
            f"elite {record['elite_fitness']:9.1f} | best {record['best_fitness']:9.1f} | "
            f"{record['steps_per_s'] or 0:8.0f} steps/s | {fits}")


def summarise(state: LoopState, run_dir: Path) -> dict[str, Any]:
    elite = load_agent(run_dir / ELITE_FILE)
    return {
        "target_reached": state.target_reached,
        "best_fitness": state.best_fitness,
        "elite_fitness": state.elite_history[-1] if state.elite_history else None,
        "generations": len(state.elite_history),
        "total_env_steps": state.total_env_steps,
        "wall_s": round(state.wall_s, 3),
        "elite_sha256": weights_sha256(elite),
    }


def run_evolution(
    config: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True,
    workers: int | None = None, wandb: bool = False,
) -> dict[str, Any]:
    """Runs (or continues) an evolutionary run; returns the summary written to `summary.json`."""
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if resume:
        if not checkpoint_path.is_file():
            raise UserError(f"nothing to resume: {checkpoint_path} does not exist")
        state = load_state(checkpoint_path)
        _truncate_logs(run_dir, state.generation)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "lineage.jsonl"):
            (run_dir / name).unlink(missing_ok=True)
        atomic_write_bytes(run_dir / "config.yaml", dump_config(config).encode())
        state = initial_state(config)
        with (run_dir / "lineage.jsonl").open("w") as lineage:
            for member in state.members:
                lineage.write(json.dumps({"generation": 0, **member.record()}) + "\n")
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

    backend = make_backend(config.backend, workers or config.workers)
    aborted = True
    try:
        if not state.finished:
            state = run_generations(state, s, backend, run_dir,
                                    lambda st: save_state(checkpoint_path, st), on_generation)
        aborted = False
    except KeyboardInterrupt:
        raise RunInterrupted(f"interrupted; the last finished generation is saved: "
                             f"evopop train --resume {run_dir}") from None
    finally:
        backend.close(abort=aborted)
        bar.close()
        if tracker is not None:
            tracker.close()
    summary = summarise(state, run_dir)
    atomic_write_bytes(run_dir / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


def resume_config(run_dir: Path) -> RunConfig:
    return load_config(run_dir / "config.yaml")
