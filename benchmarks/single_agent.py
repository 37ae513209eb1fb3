"""Train one recurrent PPO agent on a NoVel task and report speed and final return.

Usage: python benchmarks/single_agent.py --env PendulumNoVel-v1 --steps 100000 --seed 0

Settings come from the env's bundled config in configs/single/ (or --config). Wall time covers
collection and updates only (not env construction or the final evaluation); the return is the
mean over 10 deterministic evaluation episodes with frozen normaliser statistics, on env seeds
disjoint from training. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from evopop.config import load_config
from evopop.training import train_single

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
    torch.set_num_threads(1)
    config = load_config(args.config or ROOT / CONFIGS[args.env],
                         {"max_steps": args.steps, "seed": args.seed, "env.id": args.env})
    with tempfile.TemporaryDirectory() as run_dir:
        summary = train_single(config, Path(run_dir), progress=False)
    print(json.dumps({
        "env": args.env,
        "steps": summary["env_steps"],
        "seed": args.seed,
        "wall_s": summary["wall_s"],
        "env_steps_per_s": summary["env_steps_per_s"],
        "mean_return": round(summary["mean_return"], 2),
        "std_return": round(summary["std_return"], 2),
        "eval_episodes": summary["eval_episodes"],
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {torch.get_num_threads()} thread, no GPU",
    }))


if __name__ == "__main__":
    main()
