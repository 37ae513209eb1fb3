"""W1 throughput: AgileRL's recurrent-PPO tutorial workload (configs/agilerl_tutorial.yaml).

Usage: python benchmarks/w1_throughput.py [--generations 5] [--workers 2]
                                          [--backend processes|local|ray]

Runs the population for a fixed number of generations and prints env-steps/s three ways:
`loop` = env steps / wall time of the generation loop (training, evaluation, selection,
mutation and checkpoints; worker start-up excluded), `end_to_end` = env steps / wall time of
the whole call including worker start-up, and `steady` = generations 2..N only (no worker,
actor or Ray start-up at all: what `--backend ray` is compared on). Each generation every
member collects one rollout of 16 envs x 1024 steps (>= evo_steps = 10k) and is evaluated on
3 episodes. AgileRL runs this workload at about 4.6k env-steps/s on a 2-core machine
(DESIGN.md section 4). Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from evopop.config import load_config
from evopop.rundir import RunDir
from evopop.training import run_training

ROOT = Path(__file__).resolve().parents[1]
AGILERL_STEPS_PER_S = 4600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backend", default="processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rollout = 16 * 1024
    config = load_config(ROOT / "configs" / "agilerl_tutorial.yaml", {
        "max_steps": args.generations * rollout, "seed": args.seed, "backend": args.backend})
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        summary = run_training(config, Path(run_dir), progress=False, workers=args.workers)
        end_to_end = time.perf_counter() - start
        lines = RunDir(Path(run_dir)).generations()
    steps = summary.total_env_steps
    loop_rate = steps / summary.wall_s
    first, last = lines[0], lines[-1]  # steady state: generations 2..N, after every start-up
    steady = ((last.total_env_steps - first.total_env_steps)
              / (last.wall_s - first.wall_s)) if len(lines) > 1 else None
    print(json.dumps({
        "workload": "W1 agilerl_tutorial PendulumNoVel-v1",
        "generations": summary.generations,
        "workers": args.workers,
        "backend": args.backend,
        "total_env_steps": steps,
        "loop_wall_s": summary.wall_s,
        "end_to_end_wall_s": round(end_to_end, 2),
        "loop_env_steps_per_s": round(loop_rate),
        "end_to_end_env_steps_per_s": round(steps / end_to_end),
        "steady_env_steps_per_s": round(steady) if steady else None,
        "x_agilerl": round(loop_rate / AGILERL_STEPS_PER_S, 2),
        "elite_fitness": summary.elite_fitness,
    }))


if __name__ == "__main__":
    main()
