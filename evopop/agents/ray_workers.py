"""Independent env stepping with the env workers as Ray actors, spread over the cluster's nodes.

The same worker loop as the local processes (`evopop.agents.independent`), behind a Ray actor:
rollout requests and their shares travel through the object store, and an actor that dies is
replaced and asked again, exactly like a dead worker process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

from evopop.agents.independent import (
    EnvWorkerError,
    IndependentEnvs,
    RolloutRequest,
    RolloutShare,
    WorkerLoop,
)
from evopop.envs.spec import EnvSpec
from evopop.execution.cluster import RayError, RaySettings, connect, deaths, import_ray

PLACEMENT_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 10.0


class _EnvWorkerActor:
    """One env worker: its env copies and collector live as long as the actor."""

    def __init__(self, factory: EnvSpec, num_envs: int) -> None:
        import torch

        torch.set_num_threads(1)
        self.loop = WorkerLoop(factory, num_envs)

    def pid(self) -> int:
        return os.getpid()

    def rollout(self, message: RolloutRequest, agent: bytes) -> RolloutShare:
        return self.loop.rollout(dataclasses.replace(message, agent=agent))

    def close(self) -> None:
        self.loop.close()


class RayEnvWorkers(IndependentEnvs):
    """Env workers as Ray actors (SPREAD placement: one per node before doubling up)."""

    def __init__(self, factory: EnvSpec, num_envs: int, workers: int,
                 resources: RaySettings | None = None) -> None:
        resources = resources or RaySettings()
        self._ray = import_ray()
        self._owns_ray = connect(resources.address)
        self._actor_class = self._ray.remote(
            num_cpus=resources.num_cpus_per_env_worker, max_restarts=0,
            scheduling_strategy="SPREAD")(_EnvWorkerActor)
        self._actors: dict[int, Any] = {}
        self._refs: dict[int, Any] = {}
        self._weights: tuple[bytes, Any] | None = None  # this rollout's weights and their ref
        super().__init__(factory, num_envs, workers)
        self._check_placed(resources.num_cpus_per_env_worker)

    def _check_placed(self, cpus: float) -> None:
        """Fail clearly when the cluster cannot fit the env workers (e.g. members hold every
        CPU) instead of waiting forever for a rollout."""
        ray = self._ray
        probes = [actor.pid.remote() for actor in self._actors.values()]
        _, missing = ray.wait(probes, num_returns=len(probes), timeout=PLACEMENT_TIMEOUT_S)
        if missing:
            free = ray.available_resources().get("CPU", 0.0)
            self._kill_all()  # `close` would wait on the actors that were never placed
            raise RayError(
                f"{len(missing)} of {len(probes)} env worker actors could not be placed within "
                f"{PLACEMENT_TIMEOUT_S:.0f} s (each needs {cpus} CPUs; {free} are free): lower "
                f"workers, env.env_workers or the ray.num_cpus_per_* settings")

    def _launch(self, index: int) -> None:
        self._actors[index] = self._actor_class.remote(self.factory, self.shares[index])

    def _submit(self, index: int, message: RolloutRequest) -> None:
        """The weights go into the object store once per rollout, not once per worker."""
        if self._weights is None or self._weights[0] is not message.agent:
            self._weights = (message.agent, self._ray.put(message.agent))
        bare = dataclasses.replace(message, agent=b"")
        self._refs[index] = self._actors[index].rollout.remote(bare, self._weights[1])

    def _wait(self, pending: set[int]) -> list[tuple[int, RolloutShare | None]]:
        ray = self._ray
        by_ref = {self._refs[i]: i for i in pending}
        ready, _ = ray.wait(list(by_ref), num_returns=1)
        index = by_ref[ready[0]]
        try:
            return [(index, ray.get(ready[0]))]
        except ray.exceptions.RayTaskError as error:
            raise EnvWorkerError(f"env worker {index} failed:\n{error}") from None
        except ray.exceptions.RayActorError as error:
            if getattr(error, "actor_init_failed", False):  # would fail again: say why now
                raise EnvWorkerError(f"env worker {index} could not start: {error}") from None
            return [(index, None)]
        except deaths(ray):
            return [(index, None)]

    def _discard(self, index: int) -> str:
        self._ray.kill(self._actors.pop(index), no_restart=True)
        self._refs.pop(index, None)
        return "its Ray actor died"

    def worker_pids(self) -> list[int]:
        actors = [self._actors[i] for i in range(len(self.shares))]
        return self._ray.get([actor.pid.remote() for actor in actors])

    def _kill_all(self) -> None:
        self.closed = True
        for actor in self._actors.values():
            self._ray.kill(actor, no_restart=True)
        self._actors, self._refs = {}, {}
        if self._owns_ray:
            self._ray.shutdown()

    def close(self) -> None:
        """Lets the actors close their envs (briefly), then kills them."""
        ray = self._ray
        closing = [actor.close.remote() for actor in self._actors.values()]
        with contextlib.suppress(ray.exceptions.RayError):
            ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        self._kill_all()
