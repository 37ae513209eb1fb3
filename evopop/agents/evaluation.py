"""Evaluation of an agent: episode returns and lengths with frozen normaliser statistics.

Episode j is always reset with seed `seed + j`, whether the env is a single env or a vector env of
any width, so fitness does not depend on how evaluation was parallelised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from evopop.agents.agent import Agent
from evopop.agents.episodes import EpisodeLog
from evopop.agents.spaces import batch_one
from evopop.envs.metrics import EPISODE_METRICS_KEY, EpisodeMetrics, final_metrics
from evopop.seeding import torch_generator


@dataclass
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray
    metrics: list[EpisodeMetrics] = field(default_factory=list)  # env-reported, episode order

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def evaluate(
    agent: Agent,
    env: gym.Env | gym.vector.VectorEnv,
    episodes: int,
    seed: int = 0,
    deterministic: bool = True,
    generator: torch.Generator | None = None,
) -> EvalResult:
    """Runs `episodes` whole episodes; returns per-episode returns and lengths in episode order."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not deterministic and generator is None:
        generator = torch_generator(seed)
    run = _run_vector if isinstance(env, gym.vector.VectorEnv) else _run_single
    log = run(agent, env, episodes, seed, deterministic, generator)
    return EvalResult(np.asarray(log.returns, np.float64), np.asarray(log.lengths, np.int64),
                      log.metrics)


def _run_single(
    agent: Agent, env: gym.Env, episodes: int, seed: int, deterministic: bool,
    generator: torch.Generator | None,
) -> EpisodeLog:
    log = EpisodeLog()
    for j in range(episodes):
        obs, _ = env.reset(seed=seed + j)
        state, total, steps, done = agent.initial_state(1), 0.0, 0, False
        while not done:
            action, state = agent.act(batch_one(obs), state, None, deterministic, generator)
            obs, reward, term, trunc, info = env.step(action[0])
            total += float(reward)
            steps += 1
            done = bool(term or trunc)
        log.returns.append(total)
        log.lengths.append(steps)
        if EPISODE_METRICS_KEY in info:
            log.metrics.append({k: float(v) for k, v in info[EPISODE_METRICS_KEY].items()})
    return log


def _run_vector(
    agent: Agent, envs: gym.vector.VectorEnv, episodes: int, seed: int, deterministic: bool,
    generator: torch.Generator | None,
) -> EpisodeLog:
    """Each sub-env plays one episode per batch; sub-envs past their episode are ignored."""
    n = envs.num_envs
    log = EpisodeLog()
    for first in range(0, episodes, n):
        obs, _ = envs.reset(seed=seed + first)
        state = agent.initial_state(n)
        total, steps = np.zeros(n), np.zeros(n, np.int64)
        running = np.ones(n, bool)
        metrics: list[EpisodeMetrics | None] = [None] * n
        while running.any():
            actions, state = agent.act(obs, state, None, deterministic, generator)
            obs, reward, term, trunc, infos = envs.step(actions)
            total += np.where(running, reward, 0.0)
            steps += running
            for i in np.flatnonzero(running & (term | trunc)):
                metrics[i] = final_metrics(infos, int(i))
            running &= ~(term | trunc)
        take = min(n, episodes - first)
        log.returns += total[:take].tolist()
        log.lengths += steps[:take].tolist()
        log.metrics += [m for m in metrics[:take] if m is not None]
    return log
