"""Training one agent for a number of env steps: collect, update, repeat.

`train_agent` is a function of (agent, rollout source, steps, seed): the same inputs give the
same weights, which is what parallel workers, cloning and resume in the evolutionary loop rely on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.episodes import EpisodeLog
from evopop.agents.ppo import UpdateStats, ppo_update
from evopop.seeding import spawn_seeds


@dataclass
class TrainResult:
    env_steps: int = 0
    wall_s: float = 0.0
    episodes: EpisodeLog = field(default_factory=EpisodeLog)
    updates: list[UpdateStats] = field(default_factory=list)

    @property
    def finite(self) -> bool:
        return all(u.finite for u in self.updates)


class RolloutSource(Protocol):
    """Where rollouts come from: in-process vector envs or independent env workers (both in
    `evopop.rollouts`); the learner cannot tell them apart."""

    def start(self, env_seed: int, sample_seed: int) -> None:
        """The next rollout starts new episodes: seeded env resets and action sampling."""
        ...

    def collect(self, agent: Agent, steps: int) -> RolloutBuffer:
        """`steps` steps on every env copy with the agent's current stochastic policy."""
        ...

    def pop_episodes(self) -> EpisodeLog:
        """The episodes finished since the last call."""
        ...


def train_seeds(seed: int) -> tuple[int, int, np.random.Generator]:
    """(env reset seed, action sampling seed, minibatch shuffler) of a training call: one
    derivation for `train_agent` and the batched group trainer, so both see the same streams."""
    env_seed, sample_seed, shuffle_seed = spawn_seeds(seed, 3)
    return env_seed % (2**31), sample_seed, np.random.default_rng(shuffle_seed)


def train_agent(
    agent: Agent,
    source: RolloutSource,
    total_steps: int,
    seed: int,
    on_update: Callable[[TrainResult], None] | None = None,
    schedule: tuple[int, int] | None = None,
) -> TrainResult:
    """Trains until at least `total_steps` env steps (whole rollouts) have been collected.

    The source's envs are reset with a seed derived from `seed`, so a run depends on nothing
    but its inputs.
    `schedule` = (steps done before, steps in the whole schedule) places this call on a longer
    annealing schedule (an evolutionary run calls this once per generation).
    """
    done_before, schedule_total = schedule or (0, total_steps)
    env_seed, sample_seed, shuffler = train_seeds(seed)
    source.start(env_seed, sample_seed)
    result = TrainResult()
    start = time.perf_counter()
    while result.env_steps < total_steps:
        buf = source.collect(agent, agent.params.learn_step)
        remaining = max(0.0, 1.0 - (done_before + result.env_steps) / schedule_total)
        stats = ppo_update(agent, buf, shuffler, remaining)
        result.env_steps += buf.steps * buf.num_envs
        result.episodes.extend(source.pop_episodes())
        result.updates.append(stats)
        result.wall_s = time.perf_counter() - start
        if on_update is not None:
            on_update(result)
        if not stats.finite:
            break
    return result
