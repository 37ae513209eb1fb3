"""W2 time to solve: wall-clock and env steps until the elite's mean evaluation return on
PendulumNoVel-v1 is >= -200, with configs/pendulum_novel.yaml.

Usage: python benchmarks/time_to_solve.py [--seeds 0 1 2] [--parallel-members 2]

The run stops at the first generation whose elite reaches the target (fitness = mean return of
the config's deterministic evaluation episodes). Wall time is the generation loop's (training,
evaluation, selection, mutation, checkpoints), plus end-to-end time including worker start-up.
Because selection looks at only a few episodes, the elite is then re-evaluated on 50 fresh
episodes (`holdout_mean`), which says whether it really solves the task.
Targets: every seed solves, each in <= 180 s on 2 cores; goal: median <= 90 s. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from evopop.agents import evaluate
from evopop.agents.checkpoint import load_agent
from evopop.config import load_config
from evopop.envs import make_vec_env
from evopop.execution.worker import prepare_trainer
from evopop.rundir import RunDir
from evopop.training import run_training

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT_SEED = 10_000


def solve(seed: int, workers: int, config_path: Path) -> dict:
    config = load_config(config_path, {"seed": seed})
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        summary = run_training(config, Path(run_dir), progress=False, parallel_members=workers)
        end_to_end = time.perf_counter() - start
        elite = load_agent(RunDir(Path(run_dir)).elite)
    envs = make_vec_env(config.env.id, 10, seed=HOLDOUT_SEED)
    holdout = evaluate(elite, envs, 50, seed=HOLDOUT_SEED)
    envs.close()
    row = {"seed": seed, "solved": summary.target_reached, "wall_s": summary.wall_s,
           "end_to_end_s": round(end_to_end, 1), "env_steps": summary.total_env_steps,
           "generations": summary.generations, "elite_fitness": summary.elite_fitness,
           "holdout_mean": round(holdout.mean, 1), "holdout_std": round(holdout.std, 1)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel-members", dest="workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "pendulum_novel.yaml")
    args = parser.parse_args()
    prepare_trainer()
    rows = [solve(seed, args.workers, args.config) for seed in args.seeds]
    walls = [r["wall_s"] for r in rows]
    print(json.dumps({
        "workload": "W2 PendulumNoVel-v1 to -200",
        "parallel_members": args.workers,
        "all_solved": all(r["solved"] for r in rows),
        "max_wall_s": max(walls),
        "median_wall_s": statistics.median(walls),
        "runs": rows,
    }))


if __name__ == "__main__":
    main()
