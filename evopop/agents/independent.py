"""Independent env stepping: env worker processes collect rollouts without waiting for each other.

Lockstep vectorization (Gymnasium's async) waits at every step for the slowest env copy and does
all policy inference in the learner. Envs whose steps take milliseconds and vary with the action
(the bsk-rl satellite) waste most of their time that way. Here each worker process owns some env
copies and a copy of the policy: at the start of a rollout the learner sends the current weights,
every worker runs the ordinary `collect` loop on its own copies, and the learner joins the pieces
along the env axis. Hidden states, episode starts, truncation bootstraps and log-probs are those
of `collect`, so the update cannot tell the difference.

Each worker keeps its collector (last observation, hidden state) between rollouts, exactly as the
in-process collector does. Normaliser statistics: workers start from the learner's and send back
only what they saw, which the learner merges in worker order, so results do not depend on timing.
A worker that dies is restarted (fresh envs, reset with a seed derived from the restart count) and
asked for its share again, so the rollout completes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import signal
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.checkpoint import agent_from_bytes, agent_to_bytes
from evopop.agents.collect import Collector, EpisodeLog, collect
from evopop.envs.make import EnvError, checked, make_vec_env
from evopop.envs.spec import EnvSpec, Vectorization
from evopop.execution.placement import Placement
from evopop.seeding import derive_seed, torch_generator
from evopop.wrappers.normalize import RunningMeanStd

MAX_RESTARTS_PER_ROLLOUT = 3
"""A worker that dies this often in one rollout is failing deterministically: give up loudly."""


class EnvWorkerError(RuntimeError):
    """An env worker raised, or kept dying; the message carries its traceback."""


@dataclass(frozen=True)
class RolloutRequest:
    """Learner -> worker: collect `steps` steps with these weights."""

    agent: bytes
    steps: int
    start: tuple[int, int] | None  # (env seed, sampler seed): reset envs and states first


@dataclass(frozen=True)
class RolloutShare:
    """Worker -> learner: one worker's share of a rollout."""

    arrays: dict[str, np.ndarray]
    episodes: EpisodeLog
    obs_stats: RunningMeanStd | None  # what this worker's observations added
    reward_stats: RunningMeanStd | None


@dataclass(frozen=True)
class _Failure:
    traceback: str


def _stats(agent: Agent) -> tuple[RunningMeanStd | None, RunningMeanStd | None]:
    obs = agent.obs_norm.rms if agent.obs_norm is not None else None
    rew = agent.reward_scaler.rms if agent.reward_scaler is not None else None
    return obs, rew


def _added(after: RunningMeanStd | None, before: RunningMeanStd | None) -> RunningMeanStd | None:
    return after.since(before) if after is not None and before is not None else None


def _merge(stats: RunningMeanStd | None, share: RunningMeanStd | None) -> None:
    if stats is not None and share is not None:
        stats.combine(share)


def _buffer_arrays(buf: RolloutBuffer) -> dict[str, np.ndarray]:
    """Plain arrays: torch tensors would go through torch's shared-memory pickling instead."""
    arrays = {f.name: getattr(buf, f.name) for f in dataclasses.fields(buf)}
    arrays["states"] = buf.states.numpy()
    return arrays


def _join_buffers(pieces: list[dict[str, np.ndarray]]) -> RolloutBuffer:
    """Concatenate worker shares along the env axis (axis 3 of the `[T, C, layers, N, H]`
    states, 0 of `last_values`, 1 of everything else)."""
    axis = {"states": 3, "last_values": 0}
    joined = {
        name: np.concatenate([p[name] for p in pieces], axis=axis.get(name, 1))
        for name in pieces[0]
    }
    joined["states"] = torch.from_numpy(joined["states"])
    return RolloutBuffer(**joined)


class WorkerLoop:
    """What lives in a worker: its env copies (built on the first rollout, so a worker starts
    fast and a broken env is reported as a failure with its traceback) and its collector."""

    def __init__(self, factory: EnvSpec, num_envs: int) -> None:
        self.factory = factory
        self.num_envs = num_envs
        self.envs: SyncVectorEnv | None = None
        self.collector: Collector | None = None
        self.sampler: torch.Generator | None = None

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()

    def rollout(self, message: RolloutRequest) -> RolloutShare:
        agent = agent_from_bytes(message.agent)
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


def _worker_main(conn: Connection, factory: EnvSpec, num_envs: int) -> None:
    """Serve rollouts until the learner says stop or goes away (EOF on the pipe)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's; we stop on EOF
    loop = WorkerLoop(factory, num_envs)
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                return
            try:
                reply: RolloutShare | _Failure = loop.rollout(message)
            except Exception:
                reply = _Failure(traceback.format_exc())
            try:
                conn.send(reply)
            except (BrokenPipeError, ConnectionResetError):
                return  # the learner is gone
    finally:
        loop.close()


def split_envs(num_envs: int, workers: int) -> list[int]:
    """Env copies per worker, as even as possible (the first workers take the remainder)."""
    if not 1 <= workers <= num_envs:
        raise EnvError(f"env_workers must be in [1, num_envs={num_envs}], got {workers} "
                       f"(env workers step at least one copy each)")
    base, extra = divmod(num_envs, workers)
    return [base + (i < extra) for i in range(workers)]


class IndependentEnvs(ABC):
    """`num_envs` env copies stepped by workers that never wait for each other.

    Not a `VectorEnv`: it cannot step in lockstep, it collects whole rollouts
    (`train_agent` uses it through `begin` / `collect` / `pop_episodes`). Subclasses say how
    workers run (local processes here, Ray actors in `evopop.agents.ray_workers`); this class
    holds what does not depend on that: seeds, restarts and joining the shares.
    """

    def __init__(self, factory: EnvSpec, num_envs: int, workers: int) -> None:
        self.num_envs = num_envs
        self.shares = split_envs(num_envs, workers)
        probe = factory()
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        probe.close()
        self.factory = factory
        self.restarts = 0
        self._seeds = (0, 0)
        self._episodes = EpisodeLog()
        self._incarnation = [0] * workers
        self._started = [False] * workers
        self.closed = False
        for index in range(workers):
            self._launch(index)

    @abstractmethod
    def _launch(self, index: int) -> None:
        """Start worker `index` (stepping `self.shares[index]` copies)."""

    @abstractmethod
    def _submit(self, index: int, message: RolloutRequest) -> None:
        """Send a rollout request; a dead worker is noticed by `_wait`, not here."""

    @abstractmethod
    def _wait(self, pending: set[int]) -> list[tuple[int, RolloutShare | None]]:
        """Block until some pending workers replied or died: (index, piece, or None if dead)."""

    @abstractmethod
    def _discard(self, index: int) -> str:
        """Forget a dead worker; returns how it ended (for error messages)."""

    @abstractmethod
    def worker_pids(self) -> list[int]: ...

    @abstractmethod
    def close(self) -> None: ...

    def begin(self, env_seed: int, sample_seed: int) -> None:
        """Start new episodes on every copy (the next rollout resets envs and hidden states)."""
        self._seeds = (env_seed, sample_seed)
        self._started = [False] * len(self.shares)
        self._incarnation = [0] * len(self.shares)  # an earlier crash must not shift these seeds
        self._episodes = EpisodeLog()

    def _request(self, index: int, payload: bytes, steps: int) -> None:
        start = None
        if not self._started[index]:
            env_seed, sample_seed = self._seeds
            keys = (index, self._incarnation[index])
            start = (derive_seed(env_seed, *keys), derive_seed(sample_seed, *keys))
        self._submit(index, RolloutRequest(payload, steps, start))
        self._started[index] = True

    def _restart(self, index: int, deaths: int) -> None:
        ended = self._discard(index)
        if deaths > MAX_RESTARTS_PER_ROLLOUT:
            raise EnvWorkerError(f"env worker {index} died {deaths} times in one rollout "
                                 f"({ended})")
        self.restarts += 1
        self._incarnation[index] += 1
        self._started[index] = False
        self._launch(index)

    def _gather(self, payload: bytes, steps: int) -> list[RolloutShare]:
        pieces: dict[int, RolloutShare] = {}
        deaths = dict.fromkeys(range(len(self.shares)), 0)
        pending = set(range(len(self.shares)))
        while pending:
            for index, piece in self._wait(pending):
                if piece is not None:
                    pieces[index] = piece
                    pending.discard(index)
                    continue
                deaths[index] += 1
                self._restart(index, deaths[index])
                self._request(index, payload, steps)
        return [pieces[i] for i in range(len(self.shares))]

    def collect(self, agent: Agent, steps: int) -> RolloutBuffer:
        """One rollout of `steps` steps on every copy with the agent's current policy.

        If the rollout fails (a worker error, too many deaths, Ctrl-C), the workers are closed:
        replies still in flight must never be taken for the next rollout's.
        """
        if self.closed:
            raise EnvWorkerError("these env workers were closed after a failed rollout")
        payload = agent_to_bytes(agent, include_optimizer=False)
        try:
            for index in range(len(self.shares)):
                self._request(index, payload, steps)
            pieces = self._gather(payload, steps)
        except BaseException:
            self.close()
            raise
        obs_stats, reward_stats = _stats(agent)
        for piece in pieces:  # in worker order, so the result does not depend on timing
            _merge(obs_stats, piece.obs_stats)
            _merge(reward_stats, piece.reward_stats)
        self._episodes.extend(EpisodeLog.interleave([p.episodes for p in pieces]))
        return _join_buffers([p.arrays for p in pieces])

    def pop_episodes(self) -> EpisodeLog:
        done, self._episodes = self._episodes, EpisodeLog()
        return done


class ProcessEnvWorkers(IndependentEnvs):
    """Workers are spawned local processes talking over pipes."""

    def __init__(self, factory: EnvSpec, num_envs: int, workers: int) -> None:
        self._context = mp.get_context("spawn")
        self._procs: dict[int, BaseProcess] = {}
        self._conns: dict[int, Connection] = {}
        super().__init__(factory, num_envs, workers)

    def _launch(self, index: int) -> None:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(theirs, self.factory, self.shares[index]),
            name=f"evopop-env-worker-{index}", daemon=True)
        process.start()
        theirs.close()
        self._procs[index], self._conns[index] = process, ours

    def _submit(self, index: int, message: RolloutRequest) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError):
            self._conns[index].send(message)

    def _receive(self, index: int) -> RolloutShare | None:
        """The worker's reply, or None if it has none (yet, or ever: it died)."""
        try:
            if not self._conns[index].poll():
                return None
            reply = self._conns[index].recv()
        except (EOFError, ConnectionResetError, OSError):
            return None
        if isinstance(reply, _Failure):
            raise EnvWorkerError(f"env worker {index} failed:\n{reply.traceback}")
        return reply

    def _wait(self, pending: set[int]) -> list[tuple[int, RolloutShare | None]]:
        handles: list[Any] = [self._conns[i] for i in pending]
        wait(handles + [self._procs[i].sentinel for i in pending])
        replies: list[tuple[int, RolloutShare | None]] = []
        for index in sorted(pending):
            piece = self._receive(index)
            if piece is not None or not self._procs[index].is_alive():
                replies.append((index, piece))
        return replies

    def _discard(self, index: int) -> str:
        process = self._procs.pop(index)
        process.join(timeout=1.0)
        self._conns.pop(index).close()
        return f"exit code {process.exitcode}"

    def worker_pids(self) -> list[int]:
        return [self._procs[i].pid or 0 for i in sorted(self._procs)]

    def close(self) -> None:
        self.closed = True
        for conn in self._conns.values():
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError, OSError):
                conn.send(None)
        for process in self._procs.values():
            process.join(timeout=5.0)
            if process.is_alive():
                process.terminate()
                process.join()
        for conn in self._conns.values():
            conn.close()
        self._procs, self._conns = {}, {}


RolloutEnvs = VectorEnv | IndependentEnvs


def make_rollout_envs(env: EnvSpec, ray: Any = None, seed: int | None = None) -> RolloutEnvs:
    """Envs for collecting training rollouts: a lockstep `VectorEnv` (see `make_vec_env`) or,
    for `independent`, `env.env_workers` env workers (default: one per core, at most one per
    copy) as local processes or as Ray actors (`ray`: the run's Ray settings). `seed` only
    matters for lockstep envs: `train_agent` reseeds both kinds anyway."""
    if env.vectorization is not Vectorization.INDEPENDENT:
        return make_vec_env(env, seed=seed)
    count = env.env_workers if env.env_workers is not None else min(env.num_envs,
                                                                     os.cpu_count() or 1)
    split_envs(env.num_envs, count)  # a bad count fails before any env is built
    factory = checked(env)
    if env.env_worker_backend is Placement.RAY:
        from evopop.agents.ray_workers import RayEnvWorkers

        return RayEnvWorkers(factory, env.num_envs, count, ray)
    return ProcessEnvWorkers(factory, env.num_envs, count)
