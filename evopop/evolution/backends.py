"""Where members' learning cycles run: in this process, in local worker processes, or on Ray
actors; all three are `evopop.execution` pools behind `map_tasks`.

Every placement runs the same `run_task` on the same bytes with one torch thread, so they give
bit-identical results; a member whose worker dies is re-trained from the generation's starting
bytes on a fresh worker, with the same result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Protocol

from evopop.evolution.engine import Engine
from evopop.evolution.plan import Unit, plan_tasks
from evopop.evolution.task import (
    GroupTask,
    TaskResult,
    TrainTask,
    close_cached_envs,
    run_group_task,
    run_task,
)
from evopop.execution.cluster import RayError, RaySettings, connect, import_ray, totals
from evopop.execution.inline import InlinePool
from evopop.execution.placement import Placement
from evopop.execution.pool import WorkerPool, default_workers
from evopop.execution.processes import ProcessPool
from evopop.execution.ray_pool import RayPool, Reservation
from evopop.execution.tasks import map_tasks


class Backend(Protocol):
    width: int  # the workers a generation's batched groups are cut into chunks for

    def map(self, tasks: Sequence[TrainTask]) -> list[TaskResult]: ...

    def close(self, abort: bool = False) -> None: ...


class MemberHandler:
    """A member worker's handler: keeps its env cache between generations."""

    def __call__(self, task: Unit) -> TaskResult | list[TaskResult]:
        return run_group_task(task) if isinstance(task, GroupTask) else run_task(task)

    def close(self) -> None:
        """Closes the envs (and env workers) members trained on."""
        close_cached_envs()


class PoolBackend:
    """Members on a pool, each free worker taking the next member or batched group (as the
    engine plans them, `plan_tasks`, for `width` workers: the run's (`LoopState.batch_width`)
    or the configured count, not the pool's, so that a batched group is cut into the same
    chunks, and rounds the same, in process, on a pool of processes, on a Ray cluster that
    fits fewer and after a resume with other workers)."""

    def __init__(self, pool: WorkerPool, engine: Engine = Engine.PER_MEMBER,
                 width: int | None = None) -> None:
        self.pool = pool
        self.engine = engine
        self.width = width or pool.size

    def map(self, tasks: Sequence[TrainTask]) -> list[TaskResult]:
        plan = plan_tasks(tasks, self.engine, self.width)
        return plan.scatter(map_tasks(self.pool, plan.units, "member task"))

    def close(self, abort: bool = False) -> None:
        self.pool.close(abort)


def _ray_size(member: Reservation, workers: int | None, env_worker_cpus: float) -> int:
    """As many member actors as the cluster fits (with their env workers), at most `workers`."""
    total = totals()
    needs = dataclasses.replace(member, cpus=member.cpus + env_worker_cpus).needs()
    if any(total.get(name, 0.0) < amount for name, amount in needs.items()):
        has = {name: total.get(name, 0.0) for name in needs}
        raise RayError(f"one member needs {needs} ({env_worker_cpus} CPUs of them for its env "
                       f"workers); the Ray cluster has {has}")
    fits = min(math.floor(total[name] / amount) for name, amount in needs.items())
    return min(workers, fits) if workers else fits


def _ray_pool(resources: RaySettings, workers: int | None, env_worker_cpus: float) -> WorkerPool:
    reservation = Reservation(cpus=resources.num_cpus_per_member,
                              gpus=resources.num_gpus_per_member,
                              resources=resources.resources_per_member)
    owns = connect(resources.address)
    try:
        size = _ray_size(reservation, workers, env_worker_cpus)
    except RayError:
        if owns:
            import_ray().shutdown()
        raise
    return RayPool([MemberHandler] * size, [reservation] * size, owns)


def make_backend(kind: Placement, workers: int | None, ray: RaySettings | None = None,
                 env_worker_cpus: float = 0.0, engine: Engine = Engine.PER_MEMBER) -> Backend:
    """`ray` and `env_worker_cpus` (what a member's env workers reserve on Ray) are only read
    for the Ray backend, which alone imports ray. Batched groups are planned for `workers`
    (else the pool's size) until a `Population` sets the run's width."""
    return PoolBackend(_pool(kind, workers, ray, env_worker_cpus), engine, workers)


def _pool(kind: Placement, workers: int | None, ray: RaySettings | None,
          env_worker_cpus: float) -> WorkerPool:
    if kind is Placement.RAY:
        return _ray_pool(ray or RaySettings(), workers, env_worker_cpus)
    workers = workers or default_workers()
    if kind is Placement.LOCAL or workers == 1:
        return InlinePool([MemberHandler])
    # not daemonic: a member may itself use subprocess envs (`async`) or env workers
    return ProcessPool([MemberHandler] * workers, name="evopop-member")
