"""Train one recurrent PPO agent on a NoVel task and report speed and final return.

Usage: python benchmarks/single_agent.py --env PendulumNoVel-v1 --steps 100000 --seed 0

Settings come from the env's bundled config in configs/single/ (or --config); the agent trains as
a population of one (`evopop train` on a config without an evolution section). Wall time is the
generation loop's: collection, updates and the evaluation after each generation (not env
construction). The return is the last generation's: the mean over the config's deterministic
evaluation episodes with frozen normaliser statistics. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from evopop.config import load_config
from evopop.execution.worker import set_one_thread
from evopop.rundir import RunDir
from evopop.training import run_training

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "CartPoleNoVel-v1": "configs/single/cartpole_novel.yaml",
    "PendulumNoVel-v1": "configs/single/pendulum_novel.yaml",
    "MountainCarContinuousNoVel-v0": "configs/single/mountaincar_continuous_novel.yaml",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", help="YAML config (default: the env's bundled one)")
    args = parser.parse_args()
    set_one_thread()
    config = load_config(args.config or ROOT / CONFIGS[args.env],
                         {"max_steps": args.steps, "seed": args.seed, "env.id": args.env})
    with tempfile.TemporaryDirectory() as run_dir:
        summary = run_training(config, Path(run_dir), progress=False)
        returns = RunDir(Path(run_dir)).generations()[-1].members[0].eval_returns
    print(json.dumps({
        "env": args.env,
        "steps": summary.total_env_steps,
        "seed": args.seed,
        "wall_s": summary.wall_s,
        "env_steps_per_s": round(summary.total_env_steps / summary.wall_s, 1),
        "mean_return": round(summary.elite_fitness, 2),
        "std_return": round(float(np.std(returns)), 2),
        "eval_episodes": len(returns),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {torch.get_num_threads()} thread, no GPU",
    }))


if __name__ == "__main__":
    main()
