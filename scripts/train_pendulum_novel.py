"""A custom evolutionary loop on PendulumNoVel-v1, written against evopop's public API.

The counterpart of AgileRL's recurrent-PPO tutorial loop, readable top to bottom: each generation
every member trains `--evo-steps` env steps with PPO and is evaluated on the same episodes as the
others (`train`); tournament selection keeps the elite unchanged and clones parents (`select`);
every clone gets one mutation (`mutate`). Every random stream is derived from `--seed`.
`evopop train configs/pendulum_novel.yaml` runs the same algorithm with parallel members,
checkpoints, resume and logs.

    python scripts/train_pendulum_novel.py --max-steps 150000 --out pendulum_elite.safetensors
    python scripts/enjoy_elite.py pendulum_elite.safetensors --record pendulum.gif
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from evopop import Population, load_config, save_agent

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pendulum_novel.yaml"
TARGET = -200.0  # stop once the elite's mean evaluation return reaches this


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=150_000, help="env steps per member")
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--evo-steps", type=int, default=8192, help="env steps per generation")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("pendulum_elite.safetensors"))
    args = parser.parse_args()
    for name in ("max_steps", "population", "evo_steps", "num_envs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """The tuned recipe of configs/pendulum_novel.yaml; rollouts shrink to fit small budgets."""
    learn_step = max(8, min(1024, args.evo_steps // args.num_envs))
    return {"seed": args.seed, "max_steps": args.max_steps, "env.num_envs": args.num_envs,
            "evolution.population_size": args.population,
            "evolution.selection.size": min(2, args.population),
            "evolution.evo_steps": args.evo_steps, "ppo.learn_step": learn_step,
            "ppo.batch_size": min(128, learn_step * args.num_envs)}


def main() -> None:
    args = parse_args()
    config = load_config(CONFIG, overrides(args))
    start = time.perf_counter()
    with Population(config) as population:
        while True:
            fitness = population.train()
            elite = population.elite
            save_agent(elite.agent, args.out, extra={
                "env_id": config.env.id, "env": config.env.model_dump(mode="json"),
                "member_id": elite.id, "fitness": elite.fitness[-1]})
            print(f"gen {population.generation:3d}  steps/member {elite.env_steps:7d}  fitness "
                  + " ".join(f"{f:8.1f}" for f in fitness)
                  + f"  elite {elite.fitness[-1]:8.1f}  {time.perf_counter() - start:6.1f}s",
                  flush=True)
            done = all(m.env_steps >= config.max_steps for m in population.members)
            if elite.fitness[-1] >= TARGET or done:
                break
            population.select()
            population.mutate()
    print(f"elite: member {elite.id}, fitness {elite.fitness[-1]:.1f}, saved to {args.out}")


if __name__ == "__main__":
    main()
