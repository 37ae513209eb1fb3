"""Rollouts collected in this process on a lockstep vector env (sync, async or timed async)."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium.vector import VectorEnv

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.episodes import EpisodeLog
from evopop.rollouts.collect import Collector, collect
from evopop.rollouts.lockstep import TimedVectorEnv
from evopop.seeding import torch_generator


class VectorRollouts:
    """A `RolloutSource` over `envs`; the collector (last observation, hidden state) carries
    over between rollouts until the next `start`."""

    def __init__(self, envs: VectorEnv) -> None:
        self.envs = envs
        self.num_envs = envs.num_envs
        self.single_observation_space: Any = envs.single_observation_space
        self.single_action_space: Any = envs.single_action_space
        self._seeds = (0, 0)
        self._collector: Collector | None = None
        self._sampler: torch.Generator | None = None

    @property
    def closed(self) -> bool:
        return bool(self.envs.closed)

    @property
    def timed_out(self) -> int:
        """Copies replaced for missing a deadline (only timed lockstep envs have one)."""
        return self.envs.timed_out if isinstance(self.envs, TimedVectorEnv) else 0

    def start(self, env_seed: int, sample_seed: int) -> None:
        self._seeds = (env_seed, sample_seed)
        self._collector, self._sampler = None, None

    def collector(self, agent: Agent) -> tuple[Collector, torch.Generator]:
        """The collector and sampling generator of the current `start` (made on first use),
        for callers that step these envs themselves (the batched group collector)."""
        if self._collector is None or self._sampler is None:
            env_seed, sample_seed = self._seeds
            self._collector = Collector.start(agent, self.envs, seed=env_seed)
            self._sampler = torch_generator(sample_seed)
        return self._collector, self._sampler

    def collect(self, agent: Agent, steps: int) -> RolloutBuffer:
        col, sampler = self.collector(agent)
        return collect(agent, col, steps, sampler)

    def pop_episodes(self) -> EpisodeLog:
        return self._collector.pop_episodes() if self._collector is not None else EpisodeLog()

    def close(self) -> None:
        self.envs.close()
