"""The pool as Ray actors, placed by Ray over the cluster's nodes.

Messages and replies travel through the object store; an actor that dies (or whose node or
result is lost) is reported as a death, so the caller replaces it and resends, exactly like a
dead worker process. ray is imported only when such a pool is built.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from evopop.execution.cluster import deaths, import_ray
from evopop.execution.pool import CLOSE_TIMEOUT_S, Death, Failure, Outcome, Reply, WorkerError
from evopop.execution.worker import HandlerFactory, Host, set_one_thread


@dataclass(frozen=True)
class Reservation:
    """What one actor reserves; `spread` places actors on different nodes before doubling up."""

    cpus: float = 1.0
    gpus: float = 0.0
    spread: bool = False


class _HostActor(Host):
    """A `Host` living in a Ray actor, with one torch thread."""

    def __init__(self, factory: HandlerFactory) -> None:
        set_one_thread()
        super().__init__(factory)


class RayPool:
    """One actor per worker, each with its own reservation. `owns_ray`: this pool started Ray
    (see `cluster.connect`) and shuts it down when it closes."""

    def __init__(self, factories: Sequence[HandlerFactory], reservations: Sequence[Reservation],
                 owns_ray: bool) -> None:
        self._ray = import_ray()
        self.size = len(factories)
        self.restarts = 0
        self.closed = False
        self._owns_ray = owns_ray
        self._factories = list(factories)
        self._classes = [self._actor_class(r) for r in reservations]
        self._actors: dict[int, Any] = {}
        self._refs: dict[int, Any] = {}

    def _actor_class(self, reservation: Reservation) -> Any:
        options: dict[str, Any] = {"num_cpus": reservation.cpus, "num_gpus": reservation.gpus,
                                   "max_restarts": 0}
        if reservation.spread:
            options["scheduling_strategy"] = "SPREAD"
        return self._ray.remote(**options)(_HostActor)

    def _start(self, worker: int) -> None:
        if self.closed:
            raise WorkerError("this worker pool was closed (after a failure or Ctrl-C)")
        self._actors[worker] = self._classes[worker].remote(self._factories[worker])

    def put(self, value: Any) -> Any:
        return self._ray.put(value)

    def submit(self, worker: int, *args: Any) -> None:
        if worker not in self._actors:
            self._start(worker)
        self._refs[worker] = self._actors[worker].handle.remote(*args)

    def wait(self, pending: Collection[int], timeout: float | None = None) -> list[Outcome]:
        ray = self._ray
        by_ref = {self._refs[w]: w for w in pending}
        ready_refs, _ = ray.wait(list(by_ref), num_returns=1, timeout=timeout)
        if not ready_refs:
            return []
        ready = ready_refs[0]
        worker = by_ref[ready]
        del self._refs[worker]
        try:
            return [Reply(worker, ray.get(ready))]
        except ray.exceptions.RayTaskError as error:
            return [Failure(worker, str(error))]
        except (ray.exceptions.RayActorError, *deaths(ray)) as error:
            return [Death(worker, f"its Ray actor died: {error}")]

    def restart(self, worker: int) -> None:
        self._ray.kill(self._actors.pop(worker), no_restart=True)
        self._refs.pop(worker, None)
        self.restarts += 1
        self._start(worker)

    def _start_all(self) -> None:
        for worker in range(self.size):
            if worker not in self._actors:
                self._start(worker)

    def pids(self) -> list[int]:
        self._start_all()
        return self._ray.get([self._actors[w].pid.remote() for w in range(self.size)])

    def unplaced(self, timeout_s: float) -> int:
        """Starts every actor; how many Ray could not place within `timeout_s` (e.g. the
        cluster's CPUs are all reserved)."""
        self._start_all()
        probes = [actor.pid.remote() for actor in self._actors.values()]
        _, missing = self._ray.wait(probes, num_returns=len(probes), timeout=timeout_s)
        return len(missing)

    def close(self, abort: bool = False) -> None:
        """Lets the actors close their handlers (unless aborting), kills them, and stops Ray
        if this pool started it."""
        ray = self._ray
        if not abort and not self.closed:
            closing = [actor.close.remote() for actor in self._actors.values()]
            with contextlib.suppress(ray.exceptions.RayError):
                ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        self.closed = True
        for actor in self._actors.values():
            ray.kill(actor, no_restart=True)
        self._actors, self._refs = {}, {}
        if self._owns_ray:
            self._owns_ray = False
            ray.shutdown()
