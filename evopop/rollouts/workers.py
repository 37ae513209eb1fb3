"""Independent env stepping: env workers collect rollouts without waiting for each other.

Lockstep vectorization (Gymnasium's async) waits at every step for the slowest env copy and does
all policy inference in the learner. Envs whose steps take milliseconds and vary with the action
(the bsk-rl satellite) waste most of their time that way. Here each worker (a process or a Ray
actor of an `evopop.execution` pool) owns some env copies and a copy of the policy: at the start
of a rollout the learner sends the current weights, every worker runs the ordinary `collect`
loop on its own copies, and the learner joins the pieces along the env axis. Hidden states,
episode starts, truncation bootstraps and log-probs are those of `collect`, so the update
cannot tell the difference.

A worker that dies is restarted (fresh envs, reset with a seed derived from its incarnation)
and asked for its share again, so the rollout completes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.checkpoint import agent_to_bytes
from evopop.agents.episodes import EpisodeLog
from evopop.envs.make import EnvError
from evopop.execution.pool import (
    MAX_DEATHS_PER_TASK,
    Death,
    Failure,
    Reply,
    WorkerError,
    WorkerPool,
)
from evopop.rollouts.env_worker import RolloutRequest, RolloutShare, join_buffers, merge_stats
from evopop.rollouts.timeouts import StepTimeouts
from evopop.seeding import derive_seed


def split_envs(num_envs: int, workers: int) -> list[int]:
    """Env copies per worker, as even as possible (the first workers take the remainder)."""
    if not 1 <= workers <= num_envs:
        raise EnvError(f"env_workers must be in [1, num_envs={num_envs}], got {workers} "
                       f"(env workers step at least one copy each)")
    base, extra = divmod(num_envs, workers)
    return [base + (i < extra) for i in range(workers)]


LOG = logging.getLogger("evopop.rollouts")


class WorkerRollouts:
    """A `RolloutSource` over `sum(shares)` env copies stepped by the workers of `pool` (worker
    i steps `shares[i]` copies). Not a `VectorEnv`: it cannot step in lockstep, it collects
    whole rollouts. This class holds what does not depend on where workers run: seeds,
    restarts and joining the shares."""

    def __init__(self, pool: WorkerPool, shares: list[int], observation_space: Any,
                 action_space: Any, timeouts: StepTimeouts | None = None) -> None:
        self.pool = pool
        self.timeouts = timeouts or StepTimeouts()
        self.timed_out = 0  # workers killed for taking too long, over this source's life
        self._deadlines: dict[int, float] = {}
        self.shares = shares
        self.num_envs = sum(shares)
        self.single_observation_space = observation_space
        self.single_action_space = action_space
        self.closed = False
        self._seeds = (0, 0)
        self._episodes = EpisodeLog()
        self._incarnation = [0] * len(shares)
        self._started = [False] * len(shares)

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def worker_pids(self) -> list[int]:
        return self.pool.pids()

    def start(self, env_seed: int, sample_seed: int) -> None:
        """Start new episodes on every copy (the next rollout resets envs and hidden states)."""
        self._seeds = (env_seed, sample_seed)
        self._started = [False] * len(self.shares)
        self._incarnation = [0] * len(self.shares)  # an earlier crash must not shift these seeds
        self._episodes = EpisodeLog()

    def _request(self, worker: int, weights: Any, steps: int) -> None:
        start = None
        if not self._started[worker]:
            env_seed, sample_seed = self._seeds
            keys = (worker, self._incarnation[worker])
            start = (derive_seed(env_seed, *keys), derive_seed(sample_seed, *keys))
        self.pool.submit(worker, RolloutRequest(steps, start), weights)
        self._started[worker] = True
        budget = self.timeouts.budget(steps, resets=start is not None)
        if budget is not None:
            self._deadlines[worker] = time.monotonic() + budget

    def _restart(self, death: Death, deaths: int) -> None:
        if deaths > MAX_DEATHS_PER_TASK:
            raise WorkerError(f"env worker {death.worker} died {deaths} times in one rollout "
                              f"({death.how})")
        if not self.pool.restart(death.worker):
            raise WorkerError(f"env worker {death.worker} died ({death.how}) and the cluster has "
                              f"no room for a new one: its env copies are lost")
        self._incarnation[death.worker] += 1
        self._started[death.worker] = False

    def _gather(self, weights: Any, steps: int) -> list[RolloutShare]:
        shares: dict[int, RolloutShare] = {}
        deaths = dict.fromkeys(range(len(self.shares)), 0)
        pending = set(range(len(self.shares)))
        while pending:
            for outcome in self.pool.wait(pending, self._time_left(pending)) \
                    or self._overdue(pending):
                if isinstance(outcome, Failure):
                    raise WorkerError(f"env worker {outcome.worker} failed:\n"
                                      f"{outcome.traceback}")
                if isinstance(outcome, Reply):
                    self._deadlines.pop(outcome.worker, None)
                    shares[outcome.worker] = outcome.value
                    pending.discard(outcome.worker)
                    continue
                deaths[outcome.worker] += 1
                self._restart(outcome, deaths[outcome.worker])
                self._request(outcome.worker, weights, steps)
        return [shares[i] for i in range(len(self.shares))]

    def _time_left(self, pending: set[int]) -> float | None:
        deadlines = [self._deadlines[w] for w in pending if w in self._deadlines]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _overdue(self, pending: set[int]) -> list[Death]:
        """Workers past their deadline, as deaths: killed, replaced, asked again."""
        now = time.monotonic()
        late = [w for w in sorted(pending) if self._deadlines.get(w, now + 1) <= now]
        for worker in late:
            self.timed_out += 1
            LOG.warning("env worker %d took longer than its step timeout: replacing it", worker)
        return [Death(w, "it exceeded env.step_timeout_s") for w in late]

    def collect(self, agent: Agent, steps: int) -> RolloutBuffer:
        """One rollout of `steps` steps on every copy with the agent's current policy.

        If the rollout fails (a worker error, too many deaths, Ctrl-C), the workers are killed:
        replies still in flight must never be taken for the next rollout's.
        """
        if self.closed:
            raise WorkerError("these env workers were closed after a failed rollout")
        try:
            weights = self.pool.put(agent_to_bytes(agent, include_optimizer=False))
            for worker in range(len(self.shares)):
                self._request(worker, weights, steps)
            shares = self._gather(weights, steps)
        except BaseException:
            self.close(abort=True)
            raise
        merge_stats(agent, shares)  # in worker order, so the result does not depend on timing
        self._episodes.extend(EpisodeLog.interleave([s.episodes for s in shares]))
        return join_buffers([s.arrays for s in shares])

    def pop_episodes(self) -> EpisodeLog:
        done, self._episodes = self._episodes, EpisodeLog()
        return done

    def close(self, abort: bool = False) -> None:
        self.closed = True
        self.pool.close(abort)
