"""Lockstep stepping with a step timeout: `vectorization: async` when `env.step_timeout_s` is set.

Every env copy runs in a process of its own and all copies step together, as in Gymnasium's
AsyncVectorEnv. That class cannot survive a hung copy: `step_wait(timeout)` raises a
`TimeoutError` without saying which copy is late, the late reply stays in its pipe (the next
step would read it as its own) and a copy cannot be replaced. Here each copy is a worker of an
`evopop.execution` process pool. A copy that misses its deadline (`env.step_timeout_s` for a
step, including the reset that ends an episode; `env.reset_timeout_s` for starting and
resetting) or dies is killed, and a fresh copy is started and reset with a seed derived from
(the last seeded reset's seed, copy, incarnation): the run stays a function of its seed. The
step reports that copy as truncated with reward 0, its last observation as the final one (the
value bootstrap reads it) and the fresh copy's first observation as the next one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from evopop.envs.env_copy import Command, EnvCopy
from evopop.envs.make import env_factory
from evopop.envs.spec import EnvSpec
from evopop.execution.pool import MAX_DEATHS_PER_TASK, Death, Failure, Reply, WorkerError
from evopop.execution.processes import ProcessPool
from evopop.rollouts.timeouts import StepTimeouts
from evopop.seeding import derive_seed

LOG = logging.getLogger("evopop.rollouts")
Request = tuple[Command, Any]


class TimedVectorEnv(VectorEnv):
    """`num_envs` copies from `factory` in lockstep, each in its own process, with deadlines:
    `step_s` per step, `reset_s` per start and reset. `timed_out` counts the copies replaced
    for missing one."""

    def __init__(self, factory: Callable[[], gym.Env], num_envs: int,
                 spaces: tuple[gym.Space, gym.Space], step_s: float, reset_s: float) -> None:
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = spaces
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        self.step_s, self.reset_s = step_s, reset_s
        self.timed_out = 0
        self.pool = ProcessPool([partial(EnvCopy, factory)] * num_envs, daemon=True,
                                name="evopop-env-copy", torch_worker=False)
        self._base_seeds: list[int] = list(range(num_envs))  # of the last seeded reset
        self._incarnation = [0] * num_envs
        self._last_obs: list[Any] = [None] * num_envs

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Copy i is reset with seed + i, as in Gymnasium's vector envs."""
        seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        if seed is not None:
            self._base_seeds = [seed + i for i in range(self.num_envs)]
            self._incarnation = [0] * self.num_envs
        replies, _ = self._gather({i: (Command.RESET, {"seed": s, "options": options})
                                   for i, s in enumerate(seeds)})
        infos: dict[str, Any] = {}
        for i in range(self.num_envs):
            self._last_obs[i], info = replies[i]
            infos = self._add_info(infos, info, i)
        return self._batch(self._last_obs), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        requests = {i: (Command.STEP, a) for i, a in enumerate(iterate(self.action_space,
                                                                         actions))}
        replies, replaced = self._gather(requests)
        rewards = np.zeros(self.num_envs, np.float64)
        terminated = np.zeros(self.num_envs, np.bool_)
        truncated = np.zeros(self.num_envs, np.bool_)
        infos: dict[str, Any] = {}
        for i in range(self.num_envs):
            if i in replaced:  # a fresh copy's reset: the old episode ends here, truncated
                obs, reset_info = replies[i]
                info = {"final_info": {}, "final_obs": self._last_obs[i], **reset_info}
                truncated[i] = True
            else:
                obs, rewards[i], terminated[i], truncated[i], info = replies[i]
            self._last_obs[i] = obs
            infos = self._add_info(infos, info, i)
        return self._batch(self._last_obs), rewards, terminated, truncated, infos

    def _batch(self, observations: list[Any]) -> Any:
        out = create_empty_array(self.single_observation_space, self.num_envs, fn=np.zeros)
        return concatenate(self.single_observation_space, observations, out)

    def _gather(self, requests: dict[int, Request]) -> tuple[dict[int, Any], set[int]]:
        """Sends each copy its request and waits for every reply. A copy that is late or dies
        is replaced and reset (`replaced`: their replies are reset replies). Any error closes
        these envs: a reply still in flight must never be read as a later step's."""
        try:
            return self._collect_replies(requests)
        except BaseException:
            self.close(terminate=True)
            raise

    def _collect_replies(self, requests: dict[int, Request]) -> tuple[dict[int, Any], set[int]]:
        deadlines: dict[int, float] = {}
        for copy, request in requests.items():
            self._send(copy, request, deadlines)
        replies: dict[int, Any] = {}
        replaced: set[int] = set()
        losses: Counter[int] = Counter()
        while deadlines:
            left = max(0.0, min(deadlines.values()) - time.monotonic())
            for outcome in self.pool.wait(list(deadlines), left) or self._overdue(deadlines):
                copy = outcome.worker
                if isinstance(outcome, Failure):
                    raise WorkerError(f"env copy {copy} failed:\n{outcome.traceback}")
                if isinstance(outcome, Reply):
                    del deadlines[copy]
                    replies[copy] = outcome.value
                    continue
                losses[copy] += 1
                if losses[copy] > MAX_DEATHS_PER_TASK:
                    raise WorkerError(f"env copy {copy} was lost {losses[copy]} times in one "
                                      f"step ({outcome.how})")
                self._replace(copy, deadlines)
                replaced.add(copy)
        return replies, replaced

    def _send(self, copy: int, request: Request, deadlines: dict[int, float]) -> None:
        self.pool.submit(copy, *request)
        allowance = self.reset_s if request[0] is Command.RESET else self.step_s
        deadlines[copy] = time.monotonic() + allowance

    def _overdue(self, deadlines: dict[int, float]) -> list[Death]:
        now = time.monotonic()
        late = [copy for copy, deadline in sorted(deadlines.items()) if deadline <= now]
        for copy in late:
            self.timed_out += 1
            LOG.warning("env copy %d missed its deadline (env.step_timeout_s / "
                        "env.reset_timeout_s): replacing it", copy)
        return [Death(copy, "it missed its deadline") for copy in late]

    def _replace(self, copy: int, deadlines: dict[int, float]) -> None:
        """A fresh process for `copy`, reset with the next seed of its own stream."""
        self.pool.restart(copy)
        self._incarnation[copy] += 1
        seed = derive_seed(self._base_seeds[copy], copy, self._incarnation[copy])
        self._send(copy, (Command.RESET, {"seed": seed}), deadlines)

    def close_extras(self, terminate: bool = False, **kwargs: Any) -> None:
        self.pool.close(abort=terminate)


def timed_vector_env(env: EnvSpec, step_s: float) -> TimedVectorEnv:
    """The spec's copies in timed lockstep: `step_s` per step, the spec's reset timeout."""
    factory = env_factory(env)
    probe = factory()
    spaces = probe.observation_space, probe.action_space
    probe.close()
    reset_s = StepTimeouts(step_s, env.reset_timeout_s).reset_budget()
    return TimedVectorEnv(factory, env.num_envs, spaces, step_s, reset_s)
