"""Training one agent for a number of env steps: collect, update, repeat.

`train_agent` is a function of (agent, envs, steps, seed): the same inputs give the same weights,
which is what parallel workers, cloning and resume in the evolutionary loop rely on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from gymnasium.vector import VectorEnv

from evopop.agents.agent import Agent
from evopop.agents.collect import Collector, collect
from evopop.agents.ppo import UpdateStats, ppo_update
from evopop.seeding import spawn_seeds, torch_generator


@dataclass
class TrainResult:
    env_steps: int = 0
    wall_s: float = 0.0
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    updates: list[UpdateStats] = field(default_factory=list)

    @property
    def finite(self) -> bool:
        return all(u.finite for u in self.updates)


def train_agent(
    agent: Agent,
    envs: VectorEnv,
    total_steps: int,
    seed: int,
    on_update: Callable[[TrainResult], None] | None = None,
    schedule: tuple[int, int] | None = None,
) -> TrainResult:
    """Trains until at least `total_steps` env steps (whole rollouts) have been collected.

    The envs are reset with a seed derived from `seed`, so a run depends on nothing but its inputs.
    `schedule` = (steps done before, steps in the whole schedule) places this call on a longer
    annealing schedule (an evolutionary run calls this once per generation).
    """
    done_before, schedule_total = schedule or (0, total_steps)
    env_seed, sample_seed, shuffle_seed = spawn_seeds(seed, 3)
    sampler = torch_generator(sample_seed)
    shuffler = np.random.default_rng(shuffle_seed)
    col = Collector.start(agent, envs, seed=env_seed % (2**31))
    result = TrainResult()
    start = time.perf_counter()
    while result.env_steps < total_steps:
        buf = collect(agent, col, agent.params.learn_step, sampler)
        remaining = max(0.0, 1.0 - (done_before + result.env_steps) / schedule_total)
        stats = ppo_update(agent, buf, shuffler, remaining)
        result.env_steps += buf.steps * buf.num_envs
        returns, lengths = col.pop_episodes()
        result.episode_returns += returns
        result.episode_lengths += lengths
        result.updates.append(stats)
        result.wall_s = time.perf_counter() - start
        if on_update is not None:
            on_update(result)
        if not stats.finite:
            break
    return result
