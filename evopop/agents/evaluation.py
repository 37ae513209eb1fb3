"""Evaluation of an agent: episode returns and lengths with frozen normaliser statistics.

Episode j is always reset with seed `seed + j`, whether the env is a single env or a vector env of
any width, so fitness does not depend on how evaluation was parallelised.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from evopop.agents.agent import Agent
from evopop.agents.episodes import EpisodeLog
from evopop.agents.spaces import batch_one
from evopop.envs.fast import FastVectorEnv
from evopop.envs.make import make_vec_env
from evopop.envs.metrics import EPISODE_METRICS_KEY, EpisodeMetrics, final_metrics
from evopop.envs.spec import EnvSpec, Vectorization
from evopop.seeding import torch_generator

IN_PROCESS_WIDTH = 64
"""Most in-process (sync) copies one evaluation steps at once: a small recurrent net's batched
step costs little more for 64 envs than for 16, so wider evaluations pay fewer policy steps per
episode. 32 episodes on 32 copies took 0.79x (PendulumNoVel) and 0.57x (CartPoleNoVel) the CPU
of 16 copies, 64 on 64 0.73x and 0.72x (benchmarks/eval_cost.py)."""


def eval_env_spec(env: EnvSpec, episodes: int) -> EnvSpec:
    """The env an evaluation of `episodes` episodes steps: lockstep, a copy per episode up to
    `IN_PROCESS_WIDTH` in process, or, with a process per copy (async, or independent
    stepping), up to the copies training runs (process start-up is slow: env.num_envs is what
    the config asked for). More episodes than copies are played back to back.

    `fast` stays on envpool's batch while every episode has a copy of its own (copy i is built
    with episode i's seed): 48 W1 episodes took 0.14 s per member on Gymnasium's envs, a sixth
    of a member's generation. Beyond that it plays on Gymnasium's envs, which seed each episode
    as it starts."""
    if env.vectorization is Vectorization.FAST and episodes <= IN_PROCESS_WIDTH:
        return env.with_copies(episodes)
    lockstep = env.for_evaluation()
    in_process = lockstep.vectorization is Vectorization.SYNC
    return lockstep.with_copies(min(episodes, IN_PROCESS_WIDTH if in_process else env.num_envs))


@dataclass
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray
    metrics: list[EpisodeMetrics] = field(default_factory=list)  # env-reported, episode order

    @classmethod
    def of(cls, log: EpisodeLog) -> EvalResult:
        return cls(np.asarray(log.returns, np.float64), np.asarray(log.lengths, np.int64),
                   log.metrics)

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
    """Runs `episodes` whole episodes; returns per-episode returns and lengths in episode order.

    Episode j is seeded `seed + j` as it starts. envpool's batch seeds its copies only when it
    is built, so a `fast` env plays on itself only when every episode has a copy (copy j plays
    episode j and no other): then episode j's return depends on nothing but j and the seed, at
    any width. With more episodes it is played as the same spec on Gymnasium's envs, whose
    resets draw other initial states from the same seeds (the same dynamics)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if isinstance(env, FastVectorEnv) and episodes > env.num_envs:
        spec = env.env_spec.for_evaluation()
        with closing(make_vec_env(spec, env.num_envs)) as lockstep:
            return evaluate(agent, lockstep, episodes, seed, deterministic, generator)
    if not deterministic and generator is None:
        generator = torch_generator(seed)
    run = _run_vector if isinstance(env, gym.vector.VectorEnv) else _run_single
    return EvalResult.of(run(agent, env, episodes, seed, deterministic, generator))


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
    play = EpisodePlayer(envs, episodes, seed)
    state = agent.initial_state(envs.num_envs)
    while play.running:
        actions, state = agent.act(play.obs, state, play.starts, deterministic, generator)
        play.step(actions)
    return play.log()


class EpisodeTally:
    """Scores `episodes` seeded episodes on `rows` rows of a batch that its caller seeded (row
    `first_row + i`: seed + i), reset (`obs`: these rows' first observations) and steps,
    handing over each step's outcome (`observe`). Row i plays episode i; when it ends, the row
    takes the next unplayed episode if any, else it is ignored from then on."""

    def __init__(self, obs: Any, rows: int, episodes: int, seed: int, first_row: int = 0) -> None:
        """`obs`: the batch's observations of these rows (an array, or a dict or tuple)."""
        self.seed, self.episodes, self.first_row, self.width = seed, episodes, first_row, rows
        self.playing = np.where(np.arange(rows) < episodes, np.arange(rows), -1)  # episode per row
        self.upcoming = rows
        self.returns, self.lengths = np.zeros(episodes), np.zeros(episodes, np.int64)
        self.metrics: list[EpisodeMetrics | None] = [None] * episodes
        self.total, self.steps = np.zeros(rows), np.zeros(rows, np.int64)
        self.obs = obs
        self.starts = np.ones(rows, bool)  # rows whose episode starts at the next step

    @property
    def running(self) -> bool:
        return bool((self.playing >= 0).any())

    def observe(self, obs: Any, reward: np.ndarray, term: np.ndarray,
                trunc: np.ndarray, infos: dict[str, Any]) -> None:
        """One step's outcome for this player's rows (`infos` of the whole batch: row i is
        the batch's `first_row + i`); records the episodes that ended."""
        self.obs = obs
        self.total += reward
        self.steps += 1
        self.starts = term | trunc
        for i in np.flatnonzero(self.starts & (self.playing >= 0)):
            j = self.playing[i]
            self.returns[j], self.lengths[j] = self.total[i], self.steps[i]
            self.metrics[j] = final_metrics(infos, self.first_row + int(i))
            self.playing[i] = self.upcoming if self.upcoming < self.episodes else -1
            self.upcoming += 1
        self.total[self.starts], self.steps[self.starts] = 0.0, 0

    def log(self) -> EpisodeLog:
        """The episodes in episode order."""
        return EpisodeLog(self.returns.tolist(), self.lengths.tolist(),
                          [m for m in self.metrics if m is not None])


class EpisodePlayer(EpisodeTally):
    """An `EpisodeTally` of a whole vector env that it steps itself: when a sub-env's episode
    ends and episodes are left, that sub-env is reset with the next episode's seed (its hidden
    state is zeroed through `starts`). So W copies play N episodes in about N / W episode
    lengths of batched steps, not ceil(N / W) times the longest. The policy is the caller's:
    one member (`evaluate`) or a batched group of them."""

    def __init__(self, envs: gym.vector.VectorEnv, episodes: int, seed: int) -> None:
        obs, _ = envs.reset(seed=seed)  # sub-env i: seed + i
        super().__init__(obs, envs.num_envs, episodes, seed)
        self.envs = envs

    def step(self, actions: np.ndarray) -> None:
        """Steps every sub-env; records the episodes that ended and starts the next ones."""
        self.observe(*self.envs.step(actions))
        restart = self.starts & (self.playing >= 0)
        if restart.any():  # SAME_STEP autoreset has reset them unseeded: seed them anew
            seeds = [self.seed + int(j) if r else None
                     for j, r in zip(self.playing, restart, strict=True)]
            self.obs, _ = self.envs.reset(seed=seeds, options={"reset_mask": restart})
