"""A custom evolutionary loop on PendulumNoVel-v1, written against evopop's Python API.

The counterpart of AgileRL's recurrent-PPO tutorial loop, readable top to bottom: each generation
every member trains `--evo-steps` env steps with PPO, is evaluated on the same episodes as the
others, and the next generation is made by tournament selection (the elite passes unchanged),
cloning and one mutation per child. Every random stream is derived from `--seed`.
`evopop train configs/pendulum_novel.yaml` runs the same algorithm with parallel workers,
checkpoints, resume and logs.

    python scripts/train_pendulum_novel.py --max-steps 150000 --out pendulum_elite.safetensors
    python scripts/enjoy_elite.py pendulum_elite.safetensors --record pendulum.gif
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from evopop.agents import Agent, NetSpec, PPOParams, evaluate
from evopop.agents.checkpoint import save_agent
from evopop.agents.ppo import ppo_update
from evopop.envs import EnvSpec, make_vec_env
from evopop.evolution.loop import Stream
from evopop.evolution.mutation import mutate
from evopop.evolution.population import Member
from evopop.evolution.selection import elite_index, tournament_select
from evopop.evolution.settings import MutationSettings
from evopop.rollouts.collect import Collector, collect
from evopop.seeding import derive_seed, torch_generator

ENV_ID = "PendulumNoVel-v1"
TARGET = -200.0  # stop once the elite's mean evaluation return reaches this
EVAL_EPISODES = 32  # the same episodes for every member: fewer let a lucky member "solve"
SPEC = NetSpec(cell="lstm", hidden_size=64, head=(64,), activation="relu", sde=True)
MUTATION = MutationSettings(none=0.5, architecture=0.0, new_layer=0.0, parameters=0.1,
                            activation=0.0, hyperparameter=0.4)


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


def ppo_params(evo_steps: int, num_envs: int) -> PPOParams:
    """The tuned recipe of configs/pendulum_novel.yaml; rollouts shrink to fit small budgets."""
    learn_step = max(8, min(1024, evo_steps // num_envs))
    return PPOParams(lr=1e-3, learn_step=learn_step, batch_size=min(128, learn_step * num_envs),
                     update_epochs=10, gamma=0.9, gae_lambda=0.95, sde_sample_freq=4,
                     anneal=True)


def train_member(member: Member, envs: VectorEnv, steps: int, max_steps: int, seed: int) -> None:
    """PPO for at least `steps` env steps (whole rollouts), lr and clip annealed over max_steps."""
    agent = member.agent
    collector = Collector.start(agent, envs, seed=seed)
    sampler = torch_generator(derive_seed(seed, 0))  # action sampling
    shuffler = np.random.default_rng(derive_seed(seed, 1))  # minibatch order
    done = 0
    while done < steps:
        rollout = collect(agent, collector, agent.params.learn_step, sampler)
        remaining = max(0.0, 1.0 - member.env_steps / max_steps)
        ppo_update(agent, rollout, shuffler, remaining)
        done += rollout.steps * rollout.num_envs
        member.env_steps += rollout.steps * rollout.num_envs


def next_generation(population: list[Member], fitness: list[float], seed: int, generation: int,
                    next_id: int) -> list[Member]:
    """Tournament selection with elitism; every child but the elite is a mutated clone."""
    select_rng = np.random.default_rng(derive_seed(seed, generation, 0, Stream.SELECT))
    parents = tournament_select(fitness, min(2, len(population)), True, select_rng)
    children = [population[parents[0]]]
    for slot, parent in enumerate(parents[1:], start=1):
        child = population[parent].clone(next_id + slot - 1, generation + 1)
        mutate_rng = np.random.default_rng(derive_seed(seed, generation, slot, Stream.MUTATE))
        torch_gen = torch_generator(derive_seed(seed, generation, slot, Stream.MUTATE_TORCH))
        child.mutation = mutate(child.agent, MUTATION, mutate_rng, torch_gen).to_dict()
        children.append(child)
    return children


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)  # small networks run fastest on one thread (as in the workers)
    envs = make_vec_env(ENV_ID, args.num_envs)
    eval_envs = make_vec_env(ENV_ID, min(EVAL_EPISODES, 16))
    params = ppo_params(args.evo_steps, args.num_envs)
    population = [
        Member(slot, None, 0, Agent(envs.single_observation_space, envs.single_action_space,
                                    SPEC, params, derive_seed(args.seed, 0, slot,
                                                              Stream.INIT_WEIGHTS)))
        for slot in range(args.population)
    ]
    env_section = EnvSpec(id=ENV_ID, num_envs=args.num_envs).model_dump(mode="json")
    next_id, generation, start = args.population, 0, time.perf_counter()
    while True:
        for slot, member in enumerate(population):
            train_seed = derive_seed(args.seed, generation, slot, Stream.TRAIN)
            train_member(member, envs, args.evo_steps, args.max_steps, train_seed)
        eval_seed = derive_seed(args.seed, generation, 0, Stream.EVAL)
        fitness = [evaluate(m.agent, eval_envs, EVAL_EPISODES, eval_seed).mean
                   for m in population]
        for member, value in zip(population, fitness, strict=True):
            member.fitness.append(value)
        elite = population[elite_index(fitness)]
        save_agent(elite.agent, args.out, extra={
            "env_id": ENV_ID, "env": env_section, "member_id": elite.id,
            "generation": generation, "fitness": elite.fitness[-1]})
        print(f"gen {generation:3d}  steps/member {elite.env_steps:7d}  fitness "
              + " ".join(f"{f:8.1f}" for f in fitness)
              + f"  elite {elite.fitness[-1]:8.1f}  {time.perf_counter() - start:6.1f}s",
              flush=True)
        if elite.fitness[-1] >= TARGET or min(m.env_steps for m in population) >= args.max_steps:
            break
        population = next_generation(population, fitness, args.seed, generation, next_id)
        next_id += len(population) - 1
        generation += 1
    print(f"elite: member {elite.id}, fitness {elite.fitness[-1]:.1f}, saved to {args.out}")


if __name__ == "__main__":
    main()
