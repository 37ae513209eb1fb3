"""Does evolution learn the scanning satellite? The elite against a uniform-random policy.

`configs/satellite_scanning.yaml` claims that its elite clearly beats random play on
evopop/ScanningSatellite-v0 (random play dies on the battery in ~1-4 of the 5 orbits). This
script checks the claim: it plays the run's elite (deterministic actions) and a uniform-random
policy (a seeded `numpy.random.default_rng` per episode) on the SAME episode seeds, which are
disjoint from the seeds evolution evaluated on, and prints mean reward +- std, survival rate
(mean of `alive`), orbits completed and reward per orbit for both. With `--train` it first runs
the evolution (and reports its wall time and env steps). Needs bsk-rl and Basilisk support
data (BSK_SUPPORT_DATA_CACHE, see README).

    python benchmarks/satellite_learning.py RUN_DIR [--episodes 20] [--seed 1000]
    python benchmarks/satellite_learning.py --train configs/satellite_scanning.yaml \
        --run-dir runs/satellite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from evopop.agents import Agent
from evopop.agents.checkpoint import load_agent, read_metadata
from evopop.agents.evaluation import evaluate
from evopop.envs import EnvSpec, make_env
from evopop.envs.metrics import EPISODE_METRICS_KEY, mean_metrics
from evopop.execution.worker import set_one_thread

Metrics = list[dict[str, float]]


def train(config_path: Path, run_dir: Path) -> dict[str, object]:
    """Runs the evolution of `config_path` into `run_dir` (from scratch); returns its summary."""
    from evopop.config import load_config
    from evopop.training import run_training

    config = load_config(config_path)
    start = time.perf_counter()
    summary = run_training(config, run_dir, progress=True, overwrite=True).to_json()
    summary["measured_wall_s"] = round(time.perf_counter() - start, 1)
    return summary


def play_random(env: gym.Env, episodes: int, seed: int) -> tuple[np.ndarray, Metrics]:
    """Uniform-random actions; episode j is reset with seed + j and draws its actions from
    `default_rng(seed + j)`, so the result does not depend on any global RNG."""
    returns, metrics = [], []
    for j in range(episodes):
        rng = np.random.default_rng(seed + j)
        env.reset(seed=seed + j)
        total, done, info = 0.0, False, {}
        while not done:
            _, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            total += float(reward)
            done = bool(terminated or truncated)
        returns.append(total)
        metrics.append({k: float(v) for k, v in info[EPISODE_METRICS_KEY].items()})
    return np.asarray(returns), metrics


def play_elite(agent: Agent, env: gym.Env, episodes: int, seed: int) -> tuple[np.ndarray, Metrics]:
    """The elite's deterministic actions, hidden state carried; episode j is seeded seed + j."""
    result = evaluate(agent, env, episodes, seed, deterministic=True)
    return result.returns, result.metrics


def row(name: str, returns: np.ndarray, metrics: Metrics) -> dict[str, object]:
    means = mean_metrics(metrics)
    return {"policy": name, "reward_mean": float(np.mean(returns)),
            "reward_std": float(np.std(returns)), "survival": means["alive"],
            "orbits": means["orbits_completed"], "reward_per_orbit": means["reward_per_orbit"],
            "failed_orbits": means["failed_orbits_completed"]}


def fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, object]]) -> None:
    print("| policy | reward (mean ± std) | survival | orbits | reward/orbit | orbits if failed |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {fmt(r['reward_mean'], '+.3f')} ± {fmt(r['reward_std'], '.3f')}"
              f" | {fmt(r['survival'], '.2f')} | {fmt(r['orbits'], '.2f')}"
              f" | {fmt(r['reward_per_orbit'], '+.4f')} | {fmt(r['failed_orbits'], '.2f')} |")


def machine() -> str:
    """CPU model (Linux) or architecture, and the core count."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in
             (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    return f"{names[0] if names else platform.machine()}, {os.cpu_count()} cpus"


def timed(fn: Callable[[], tuple[np.ndarray, Metrics]]) -> tuple[np.ndarray, Metrics, float]:
    start = time.perf_counter()
    returns, metrics = fn()
    return returns, metrics, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="a finished run (holds elite.safetensors)")
    parser.add_argument("--train", metavar="CONFIG", help="train this config first")
    parser.add_argument("--run-dir", dest="out", help="where --train writes the run")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="episode j is seeded seed + j")
    args = parser.parse_args()
    run_dir = Path(args.out or args.run_dir or "")
    if not (args.out or args.run_dir) or (args.train and not args.out):
        parser.error("give RUN_DIR, or --train CONFIG --run-dir DIR")
    set_one_thread()
    if args.train:
        summary = train(Path(args.train), run_dir)
        print(f"# training: {summary['total_env_steps']:,} env steps in "
              f"{summary['measured_wall_s']} s wall ({summary['generations']} generations, "
              f"elite fitness {summary['elite_fitness']:.3f})", flush=True)
    elite_path = run_dir / "elite.safetensors"
    agent = load_agent(elite_path)
    section = read_metadata(elite_path)["extra"]["env"]
    env = make_env(EnvSpec.model_validate(section))
    try:
        e_ret, e_met, e_s = timed(lambda: play_elite(agent, env, args.episodes, args.seed))
        r_ret, r_met, r_s = timed(lambda: play_random(env, args.episodes, args.seed))
    finally:
        env.close()
    rows = [row("elite (deterministic)", e_ret, e_met), row("uniform random", r_ret, r_met)]
    print(f"# {section['id']}: {args.episodes} episodes, seeds {args.seed}.."
          f"{args.seed + args.episodes - 1} (the same for both policies), elite {elite_path}")
    print(f"# {machine()}, torch {torch.__version__}; evaluation took {e_s:.0f} s (elite) + "
          f"{r_s:.0f} s (random)")
    print_table(rows)
    print(json.dumps({"episodes": args.episodes, "seed": args.seed, "rows": rows}))


if __name__ == "__main__":
    main()
