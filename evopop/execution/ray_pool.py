"""The pool as Ray actors, placed by Ray over the cluster's nodes.

Messages and replies travel through the object store; an actor that dies (or whose node or
result is lost) is reported as a death, so the caller replaces it and resends, exactly like a
dead worker process. A lost node may take the room its actors had with it: a fresh actor is
started only when the cluster has room for it, else the worker is retired and the survivors
take its work (an actor waiting for room that never comes would hang the run). ray is
imported only when such a pool is built.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evopop.execution.cluster import deaths, has_room, import_ray
from evopop.execution.pool import CLOSE_TIMEOUT_S, Death, Failure, Outcome, Reply, WorkerError
from evopop.execution.worker import HandlerFactory, Host, prepare_trainer

LOG = logging.getLogger("evopop.execution")
ROOM_WAIT_S = 5.0
"""How long a restart waits for the room a dead actor held to show up free again (Ray frees
a killed actor's CPUs within ~0.1 s; a lost node's never come back)."""


@dataclass(frozen=True)
class Reservation:
    """What one actor reserves (`resources`: custom Ray resources); `spread` places actors on
    different nodes before doubling up."""

    cpus: float = 1.0
    gpus: float = 0.0
    spread: bool = False
    resources: Mapping[str, float] = field(default_factory=dict)

    def needs(self) -> dict[str, float]:
        """By Ray resource name, zero needs left out."""
        needs = {"CPU": self.cpus, "GPU": self.gpus, **self.resources}
        return {name: amount for name, amount in needs.items() if amount > 0}


class _HostActor(Host):
    """A `Host` living in a Ray actor, with one torch thread."""

    def __init__(self, factory: HandlerFactory) -> None:
        prepare_trainer()
        super().__init__(factory)

    def node_id(self) -> str:
        return str(import_ray().get_runtime_context().get_node_id())


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
        self._reservations = list(reservations)
        self._classes = [self._actor_class(r) for r in reservations]
        self._actors: dict[int, Any] = {}
        self._refs: dict[int, Any] = {}
        self._retired: set[int] = set()

    def _actor_class(self, reservation: Reservation) -> Any:
        options: dict[str, Any] = {"num_cpus": reservation.cpus, "num_gpus": reservation.gpus,
                                   "max_restarts": 0}
        if reservation.resources:
            options["resources"] = dict(reservation.resources)
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

    def restart(self, worker: int) -> bool:
        """A fresh actor where the cluster has room for it (waiting up to `ROOM_WAIT_S` for
        the dead one's to be freed); else the worker is retired."""
        self._ray.kill(self._actors.pop(worker), no_restart=True)
        self._refs.pop(worker, None)
        if not self._room_for(worker):
            self._retired.add(worker)
            LOG.warning("Ray worker %d is gone and the cluster has no room for a new one "
                        "(a node was lost?): %d workers go on", worker, len(self.serving()))
            return False
        self.restarts += 1
        self._start(worker)
        return True

    def _room_for(self, worker: int) -> bool:
        needs = self._reservations[worker].needs()
        deadline = time.monotonic() + ROOM_WAIT_S
        while not has_room(needs):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def serving(self) -> list[int]:
        return [w for w in range(self.size) if w not in self._retired]

    def _start_all(self) -> None:
        for worker in self.serving():
            if worker not in self._actors:
                self._start(worker)

    def pids(self) -> list[int]:
        """Of the serving workers."""
        self._start_all()
        return self._ray.get([self._actors[w].pid.remote() for w in self.serving()])

    def node_ids(self) -> list[str]:
        """The Ray node each serving worker runs on."""
        self._start_all()
        return self._ray.get([self._actors[w].node_id.remote() for w in self.serving()])

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
