"""Which way of using this machine's cores wins on W1: measured, variant against variant.

Usage: python benchmarks/both_cores.py [--rounds 3] [--generations 6]

Each variant is `evopop train configs/agilerl_tutorial.yaml` as a whole process (the budget of
--generations W1 generations per member), run in turn, round after round, so that the machine's
drift hits every variant alike:
  one_process        --parallel-members 1 (one core, one torch thread, members one by one)
  two_processes      --parallel-members 2 (the default: a member per core)
  batched_one        --parallel-members 1 --engine batched (the 4 members as one computation)
  batched_two        --parallel-members 2 --engine batched (two batched groups of 2)
  sync_envs          as two_processes with env.vectorization sync (Gymnasium's Python loop
                     instead of envpool's C++ batch)
Then, in this process, one member's learning cycle (collect 16,384 steps + update) with torch's
intra-op pool at 1 and at 2 threads — the third way to use two cores (evopop pins one thread
per worker because the count changes float results). Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from w1_throughput import (  # noqa: E402
    CONFIG,
    ROOT,
    STEPS_PER_GENERATION,
    cpu_model,
    git_commit,
    steady_rate,
    timed_run,
)

VARIANTS: dict[str, list[str]] = {
    "one_process": ["--parallel-members", "1"],
    "two_processes": ["--parallel-members", "2"],
    "batched_one": ["--parallel-members", "1", "--engine", "batched"],
    "batched_two": ["--parallel-members", "2", "--engine", "batched"],
    "sync_envs": ["--parallel-members", "2", "--set", "env.vectorization=sync"],
}


def run_variant(name: str, steps: int, tmp: Path) -> dict[str, Any]:
    run_dir = tmp / name
    cmd = [sys.executable, "-m", "evopop.cli", "train", str(CONFIG), "--set",
           f"max_steps={steps}", "--run-dir", str(run_dir), "--overwrite", "--quiet",
           *VARIANTS[name]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    wall = timed_run(cmd, ROOT, env, tmp / f"{name}.log")
    summary = json.loads((run_dir / "summary.json").read_text())
    steady = steady_rate(run_dir / "metrics.jsonl")
    return {"end_to_end": summary["total_env_steps"] / wall,
            "steady": steady, "elite_sha256": summary["elite_sha256"][:12]}


def intra_op(threads: int, cycles: int = 2) -> float:
    """Wall seconds of one W1 member's learning cycle with `threads` intra-op threads."""
    import torch

    from evopop.agents import Agent
    from evopop.agents.train import train_agent
    from evopop.config import load_config
    from evopop.envs import make_vec_env
    from evopop.rollouts import VectorRollouts

    torch.set_num_threads(threads)
    config = load_config(CONFIG)
    source = VectorRollouts(make_vec_env(config.env))
    agent = Agent(source.single_observation_space, source.single_action_space, config.net,
                  config.ppo, seed=0)
    train_agent(agent, source, STEPS_PER_GENERATION, seed=0)  # warm-up
    start = time.perf_counter()
    for cycle in range(cycles):
        train_agent(agent, source, STEPS_PER_GENERATION, seed=cycle + 1)
    source.close()
    return (time.perf_counter() - start) / cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    steps = args.generations * STEPS_PER_GENERATION
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name in args.variants:
                results[name].append(run_variant(name, steps, Path(tmp)))
                r = results[name][-1]
                print(f"round {round_ + 1} {name:<14} end-to-end {r['end_to_end']:>8,.0f} "
                      f"steady {r['steady'] or 0:>8,.0f} env-steps/s  elite {r['elite_sha256']}",
                      flush=True)
    threads = {n: round(intra_op(n), 3) for n in (1, 2)}
    print(f"one member's learning cycle: {threads[1]} s at 1 thread, {threads[2]} s at 2")
    summary = {name: {"end_to_end_median": round(statistics.median(
                          r["end_to_end"] for r in rows), 1),
                      "steady_median": round(statistics.median(
                          r["steady"] or 0 for r in rows), 1)}
               for name, rows in results.items()}
    print(json.dumps({"commit": git_commit(), "cpu": cpu_model(), "cores": os.cpu_count(),
                      "generations": args.generations, "rounds": args.rounds,
                      "variants": summary, "member_cycle_s_by_threads": threads}))


if __name__ == "__main__":
    main()
