"""`train_group`: `train_agent` for a group of members, as one batched computation.

Each member gets the seeds `train_agent` would derive from its own seed, its own envs and its
own annealing schedule; collection runs one batched policy step per env step and each update
is one `batched_ppo_update`, so every member ends where `train_agent` would have taken it, up
to float rounding. Members must stack (`evopop.batched.group_members`) and share a rollout
length.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from evopop.agents.agent import Agent
from evopop.agents.train import TrainResult, train_seeds
from evopop.batched import batched_ppo_update, stack, unstack
from evopop.rollouts.collect import Collector
from evopop.rollouts.group import collect_group
from evopop.rollouts.vector import VectorRollouts


@dataclass
class _Member:
    """What one member carries through the group's training."""

    agent: Agent
    source: VectorRollouts
    collector: Collector
    sampler: torch.Generator
    shuffler: np.random.Generator
    schedule: tuple[int, int]
    result: TrainResult

    def remaining(self) -> float:
        done_before, total = self.schedule
        return max(0.0, 1.0 - (done_before + self.result.env_steps) / total)


def _start(agent: Agent, source: VectorRollouts, seed: int,
           schedule: tuple[int, int]) -> _Member:
    env_seed, sample_seed, shuffler = train_seeds(seed)
    source.start(env_seed, sample_seed)
    collector, sampler = source.collector(agent)
    return _Member(agent, source, collector, sampler, shuffler, schedule, TrainResult())


def train_group(
    agents: Sequence[Agent], sources: Sequence[VectorRollouts], total_steps: int,
    seeds: Sequence[int], schedules: Sequence[tuple[int, int]] | None = None,
) -> list[TrainResult]:
    """Trains every member until at least `total_steps` env steps (whole rollouts); a member
    whose update went non-finite stops there, as `train_agent` stops, and the others go on."""
    steps = {a.params.learn_step for a in agents}
    if len(steps) != 1:
        raise ValueError(f"a group shares one rollout length; got learn_step {sorted(steps)}")
    learn_step = steps.pop()
    plans = schedules or [(0, total_steps)] * len(agents)
    members = [_start(a, s, seed, plan)
               for a, s, seed, plan in zip(agents, sources, seeds, plans, strict=True)]
    start = time.perf_counter()
    while active := [m for m in members if m.result.env_steps < total_steps and m.result.finite]:
        group = [m.agent for m in active]
        pop = stack(group)  # from the agents, which hold the last update (unstack below)
        bufs = collect_group(pop, group, [m.collector for m in active], learn_step,
                             [m.sampler for m in active])
        stats = batched_ppo_update(pop, group, bufs, [m.shuffler for m in active],
                                   [m.remaining() for m in active])
        unstack(pop, group)
        for m, buf, update in zip(active, bufs, stats, strict=True):
            m.result.env_steps += buf.steps * buf.num_envs
            m.result.episodes.extend(m.source.pop_episodes())
            m.result.updates.append(update)
    wall = time.perf_counter() - start
    for m in members:
        m.result.wall_s = wall
    return [m.result for m in members]
