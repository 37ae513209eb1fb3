"""Rollouts collected in this process on a (sync or async) Gymnasium vector env."""

from __future__ import annotations

from typing import Any

import torch
from gymnasium.vector import VectorEnv

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.episodes import EpisodeLog
from evopop.rollouts.collect import Collector, collect
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

    def start(self, env_seed: int, sample_seed: int) -> None:
        self._seeds = (env_seed, sample_seed)
        self._collector, self._sampler = None, None

    def collect(self, agent: Agent, steps: int) -> RolloutBuffer:
        if self._collector is None or self._sampler is None:
            env_seed, sample_seed = self._seeds
            self._collector = Collector.start(agent, self.envs, seed=env_seed)
            self._sampler = torch_generator(sample_seed)
        return collect(agent, self._collector, steps, self._sampler)

    def pop_episodes(self) -> EpisodeLog:
        return self._collector.pop_episodes() if self._collector is not None else EpisodeLog()

    def close(self) -> None:
        self.envs.close()
