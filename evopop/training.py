"""Training one agent from a `RunConfig` into a run directory.

The run directory holds the resolved `config.yaml`, `metrics.jsonl` (one line per update),
the trained agent (`agent.safetensors`) and `summary.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from evopop.agents import Agent, TrainResult, evaluate, train_agent
from evopop.agents.checkpoint import atomic_write_bytes, save_agent, weights_sha256
from evopop.config import RunConfig, dump_config
from evopop.envs import make_vec_env
from evopop.envs.metrics import mean_metrics
from evopop.rollouts import Rollouts as RolloutEnvs
from evopop.rollouts import make_rollout_envs
from evopop.rundir import AGENT_FILE, METRICS_FILE, SUMMARY_FILE, prepare_fresh
from evopop.seeding import spawn_seeds


def make_train_envs(config: RunConfig, seed: int) -> RolloutEnvs:
    return make_rollout_envs(config.env, config.ray, seed)


def _metrics_line(result: TrainResult) -> dict[str, Any]:
    update = result.updates[-1]
    recent = result.episodes.returns[-20:]
    line = {
        "env_steps": result.env_steps,
        "wall_s": round(result.wall_s, 3),
        "mean_return_20": float(np.mean(recent)) if recent else None,
        **vars(update),
    }
    if result.episodes.metrics:
        line["episode_metrics_20"] = mean_metrics(result.episodes.metrics[-20:])
    return line


def train_single(
    config: RunConfig, run_dir: Path, progress: bool = True, overwrite: bool = False
) -> dict[str, Any]:
    """Trains, evaluates and saves one agent; returns the summary written to `summary.json`."""
    agent_seed, train_seed, env_seed, eval_seed = spawn_seeds(config.seed, 4)
    prepare_fresh(run_dir, dump_config(config), overwrite)
    envs = make_train_envs(config, env_seed % 2**31)
    agent = Agent(envs.single_observation_space, envs.single_action_space, config.net,
                  config.ppo, seed=agent_seed)
    bar = tqdm(total=config.max_steps, unit="step", disable=not progress, dynamic_ncols=True)
    with (run_dir / METRICS_FILE).open("w") as metrics:

        def on_update(result: TrainResult) -> None:
            line = _metrics_line(result)
            metrics.write(json.dumps(line) + "\n")
            bar.update(min(result.env_steps, config.max_steps) - bar.n)
            if line["mean_return_20"] is not None:
                bar.set_postfix(ret=f"{line['mean_return_20']:.1f}")

        try:
            result = train_agent(agent, envs, config.max_steps, train_seed, on_update)
        finally:  # env workers (and a Ray instance they started) must not outlive an error
            envs.close()
            bar.close()
    eval_envs = make_vec_env(config.env, min(config.eval_episodes, 16), eval_seed % 2**31)
    scores = evaluate(agent, eval_envs, config.eval_episodes, seed=eval_seed % 2**31)
    eval_envs.close()
    save_agent(agent, run_dir / AGENT_FILE,
               extra={"env_id": config.env.id, "env": config.env.model_dump(mode="json")})
    summary = {
        "env": config.env.id,
        "seed": config.seed,
        "env_steps": result.env_steps,
        "wall_s": round(result.wall_s, 3),
        "env_steps_per_s": round(result.env_steps / result.wall_s, 1),
        "mean_return": scores.mean,
        "std_return": scores.std,
        "eval_episodes": config.eval_episodes,
        "finite": result.finite,
        "weights_sha256": weights_sha256(agent),
    }
    if scores.metrics:
        summary["episode_metrics"] = mean_metrics(scores.metrics)
    atomic_write_bytes(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2).encode())
    return summary
