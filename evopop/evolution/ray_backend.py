"""Members' learning cycles on a Ray cluster: one actor per concurrently training member.

Only this module (and `evopop.agents.ray_workers`) imports ray, and only when a run asks for
`backend: ray`. Selection and mutation stay on the driver; a task (the member's safetensors
bytes plus its seeds) goes to an actor through the object store and the result comes back the
same way. Because `run_task` is a pure function of the task, an actor that dies mid-generation is
replaced and its member re-trained from the generation's starting bytes with the same result.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from typing import Any

from evopop.evolution.backends import WorkerError
from evopop.evolution.task import TaskResult, TrainTask
from evopop.execution.cluster import RayError, RaySettings, connect, deaths, import_ray

CLOSE_TIMEOUT_S = 10.0
MAX_ACTOR_DEATHS_PER_TASK = 3
"""A task that kills its actor this often is failing deterministically: stop the run."""


class _MemberActor:
    """Runs learning cycles with one torch thread; keeps its env cache between generations."""

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: TrainTask) -> TaskResult:
        from evopop.evolution.task import run_task

        return run_task(task)

    def close(self) -> None:
        from evopop.evolution.task import close_cached_envs

        close_cached_envs()


class RayBackend:
    """A pool of member actors, as many as the cluster fits (or `workers`)."""

    def __init__(self, resources: RaySettings, workers: int | None = None,
                 env_worker_cpus: float = 0.0) -> None:
        self._ray = import_ray()
        self._owns_ray = connect(resources.address)
        self._actors: list[Any] = []
        ray = self._ray
        total = ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 0.0)), float(total.get("GPU", 0.0))
        per_member = resources.num_cpus_per_member + env_worker_cpus  # its env workers too
        if per_member > cpus or resources.num_gpus_per_member > gpus:
            self.close()
            raise RayError(
                f"one member needs {per_member} CPUs ({env_worker_cpus} of them for its env "
                f"workers) and {resources.num_gpus_per_member} GPUs; the Ray cluster has "
                f"{cpus} CPUs and {gpus} GPUs")
        fits = math.floor(cpus / per_member)
        if resources.num_gpus_per_member > 0:
            fits = min(fits, math.floor(gpus / resources.num_gpus_per_member))
        self.size = min(workers, fits) if workers else fits
        self._actor_class = ray.remote(num_cpus=resources.num_cpus_per_member,
                                       num_gpus=resources.num_gpus_per_member,
                                       max_restarts=0)(_MemberActor)
        self.replaced = 0

    def _grow(self, count: int) -> None:
        while len(self._actors) < min(count, self.size):
            self._actors.append(self._actor_class.remote())

    def actor_pids(self, count: int) -> list[int]:
        """Starts the actors (as a `map` of `count` tasks would) and returns their pids."""
        self._grow(count)
        return self._ray.get([actor.pid.remote() for actor in self._actors])

    def _replace(self, slot: int) -> None:
        self._ray.kill(self._actors[slot], no_restart=True)
        self._actors[slot] = self._actor_class.remote()
        self.replaced += 1

    def map(self, tasks: Sequence[TrainTask]) -> list[TaskResult]:
        """Runs every task, each actor taking the next task as soon as it is free."""
        ray = self._ray
        self._grow(len(tasks))
        refs = [ray.put(task) for task in tasks]  # weights travel through the object store
        todo = list(range(len(tasks)))
        running: dict[Any, tuple[int, int]] = {}  # object ref -> (task index, actor slot)
        killed = dict.fromkeys(range(len(tasks)), 0)
        results: dict[int, TaskResult] = {}
        free = list(range(len(self._actors)))
        while todo or running:
            while todo and free:
                index, slot = todo.pop(0), free.pop(0)
                running[self._actors[slot].run.remote(refs[index])] = (index, slot)
            [ready], _ = ray.wait(list(running), num_returns=1)
            index, slot = running.pop(ready)
            try:
                results[index] = ray.get(ready)
            except ray.exceptions.RayTaskError as error:
                raise WorkerError(f"a member's learning cycle failed on Ray:\n{error}") from None
            except (ray.exceptions.RayActorError, *deaths(ray)) as error:
                killed[index] += 1
                if killed[index] > MAX_ACTOR_DEATHS_PER_TASK:
                    raise RayError(f"member {index}'s learning cycle killed its Ray actor "
                                   f"{killed[index]} times: {error}") from None
                self._replace(slot)
                todo.insert(0, index)  # re-trained from the generation's starting bytes
            free.append(slot)
        return [results[i] for i in range(len(tasks))]

    def close(self, abort: bool = False) -> None:
        """Closes the actors' envs (unless aborting), kills the actors, and stops Ray if this
        backend started it."""
        ray = self._ray
        if not abort:
            closing = [actor.close.remote() for actor in self._actors]
            with contextlib.suppress(ray.exceptions.RayError):
                ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for actor in self._actors:
            ray.kill(actor, no_restart=True)
        self._actors = []
        if self._owns_ray:
            ray.shutdown()
