"""What an env worker does with a rollout request, and how the learner joins the shares.

A worker keeps its collector (last observation, hidden state) between rollouts, exactly as the
in-process collector does. Normaliser statistics: workers start from the learner's and send
back only what they saw, which the learner merges in worker order, so results do not depend
on timing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.checkpoint import agent_from_bytes
from evopop.agents.episodes import EpisodeLog
from evopop.agents.normalize import RunningMeanStd
from evopop.rollouts.collect import Collector, collect
from evopop.seeding import torch_generator


@dataclass(frozen=True)
class RolloutRequest:
    """Learner -> worker (with the weights, sent once per rollout for every worker): collect
    `steps` steps."""

    steps: int
    start: tuple[int, int] | None  # (env seed, sampler seed): reset envs and states first


@dataclass(frozen=True)
class RolloutShare:
    """Worker -> learner: one worker's share of a rollout."""

    arrays: dict[str, np.ndarray]
    episodes: EpisodeLog
    obs_stats: RunningMeanStd | None  # what this worker's observations added
    reward_stats: RunningMeanStd | None


def _stats(agent: Agent) -> tuple[RunningMeanStd | None, RunningMeanStd | None]:
    obs = agent.obs_norm.rms if agent.obs_norm is not None else None
    rew = agent.reward_scaler.rms if agent.reward_scaler is not None else None
    return obs, rew


def _added(after: RunningMeanStd | None, before: RunningMeanStd | None) -> RunningMeanStd | None:
    return after.since(before) if after is not None and before is not None else None


def _merge(stats: RunningMeanStd | None, share: RunningMeanStd | None) -> None:
    if stats is not None and share is not None:
        stats.combine(share)


def merge_stats(agent: Agent, shares: list[RolloutShare]) -> None:
    """The shares' normaliser statistics into the learner's, in worker order."""
    obs_stats, reward_stats = _stats(agent)
    for share in shares:
        _merge(obs_stats, share.obs_stats)
        _merge(reward_stats, share.reward_stats)


def _buffer_arrays(buf: RolloutBuffer) -> dict[str, np.ndarray]:
    """Plain arrays: torch tensors would go through torch's shared-memory pickling instead."""
    arrays = {f.name: getattr(buf, f.name) for f in dataclasses.fields(buf)}
    arrays["states"] = buf.states.numpy()
    return arrays


def join_buffers(pieces: list[dict[str, np.ndarray]]) -> RolloutBuffer:
    """Concatenate worker shares along the env axis (axis 3 of the `[T, C, layers, N, H]`
    states, 0 of `last_values`, 1 of everything else)."""
    joined = {
        name: np.concatenate([p[name] for p in pieces], axis=RolloutBuffer.ENV_AXES.get(name, 1))
        for name in pieces[0]
    }
    joined["states"] = torch.from_numpy(joined["states"])
    return RolloutBuffer(**joined)


class EnvWorker:
    """A worker's handler: its env copies (built on the first rollout, so a worker starts fast
    and a broken env is reported as a failure with its traceback) and its collector."""

    def __init__(self, factory: Callable[[], gym.Env], num_envs: int) -> None:
        self.factory = factory
        self.num_envs = num_envs
        self.envs: SyncVectorEnv | None = None
        self.collector: Collector | None = None
        self.sampler: torch.Generator | None = None

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()

    def __call__(self, message: RolloutRequest, weights: bytes) -> RolloutShare:
        agent = agent_from_bytes(weights)
        if self.envs is None:
            self.envs = SyncVectorEnv([self.factory] * self.num_envs,
                                      autoreset_mode=AutoresetMode.SAME_STEP)
        if message.start is not None:
            env_seed, sample_seed = message.start
            self.collector = Collector.start(agent, self.envs, seed=env_seed)
            self.sampler = torch_generator(sample_seed)
        if self.collector is None or self.sampler is None:
            raise RuntimeError("rollout requested before the worker was started")
        before = [s.copy() if s is not None else None for s in _stats(agent)]
        buf = collect(agent, self.collector, message.steps, self.sampler)
        after = _stats(agent)
        return RolloutShare(_buffer_arrays(buf), self.collector.pop_episodes(),
                            _added(after[0], before[0]), _added(after[1], before[1]))
