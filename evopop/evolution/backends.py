"""Where members' learning cycles run: in this process, in local worker processes, or on Ray
(`evopop.evolution.ray_backend`).

Both run the same `run_task` on the same bytes with one torch thread, so they give bit-identical
results.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch

from evopop.evolution.task import TaskResult, TrainTask, close_cached_envs, run_task
from evopop.execution.placement import Placement

_POLL_S = 1.0


class WorkerError(RuntimeError):
    """A task failed inside a worker process (the message carries its traceback)."""


class Backend(Protocol):
    def map(self, tasks: Sequence[TrainTask]) -> list[TaskResult]: ...

    def close(self, abort: bool = False) -> None: ...


@contextmanager
def one_thread() -> Iterator[None]:
    """Members always train with one torch thread: the count changes float results (and two
    cores oversubscribed by torch's intra-op pool run slower than one thread each)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalBackend:
    """Members one after another in this process."""

    def map(self, tasks: Sequence[TrainTask]) -> list[TaskResult]:
        with one_thread():
            return [run_task(task) for task in tasks]

    def close(self, abort: bool = False) -> None:
        """Closes the envs (and env worker processes) members trained on."""
        close_cached_envs()


def _worker_loop(tasks: Any, results: Any, parent: int) -> None:
    """Runs tasks until told to stop, or until the parent is gone (e.g. after a kill -9)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        while os.getppid() == parent:
            try:
                item = tasks.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is None:
                return
            index, task = item
            try:
                results.put((index, True, run_task(task)))
            except Exception:  # the parent re-raises it with the worker's traceback
                results.put((index, False, traceback.format_exc()))
    finally:
        close_cached_envs()


class ProcessBackend:
    """Members in parallel in `workers` spawned processes that live for the whole run.

    Workers are plain (non-daemon) processes so that a member may itself use subprocess envs
    (`vectorization: async`); spawn keeps them free of the parent's thread pools and open envs.
    """

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._tasks = context.Queue()
        self._results = context.Queue()
        self._procs = [
            context.Process(target=_worker_loop, args=(self._tasks, self._results, os.getpid()))
            for _ in range(workers)
        ]
        for proc in self._procs:
            proc.start()

    def map(self, tasks: Sequence[TrainTask]) -> list[TaskResult]:
        for item in enumerate(tasks):
            self._tasks.put(item)
        done: dict[int, TaskResult] = {}
        for _ in tasks:
            index, ok, payload = self._next_result()
            if not ok:
                raise WorkerError(f"a member's learning cycle failed in a worker:\n{payload}")
            done[index] = payload
        return [done[i] for i in range(len(tasks))]

    def _next_result(self) -> tuple[int, bool, Any]:
        while True:
            try:
                return self._results.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [p.exitcode for p in self._procs if not p.is_alive()]
                if dead:
                    raise WorkerError(f"a worker process died (exit code {dead[0]})") from None

    def close(self, abort: bool = False) -> None:
        """Lets idle workers exit, or kills them mid-task when aborting."""
        for proc in self._procs:
            if abort:
                proc.terminate()
            else:
                self._tasks.put(None)
        for proc in self._procs:
            proc.join()
        for channel in (self._tasks, self._results):
            if abort:  # unread task bytes would block this process's exit on a dead pipe
                channel.cancel_join_thread()
            channel.close()


def default_workers() -> int:
    return os.cpu_count() or 1


def make_backend(kind: Placement, workers: int | None, ray: Any = None,
                 env_worker_cpus: float = 0.0) -> Backend:
    """`ray` (a `RaySettings`) and `env_worker_cpus` (what a member's env workers reserve on
    Ray) are only read for the Ray backend, whose module (and ray itself) is imported only
    then."""
    if kind is Placement.RAY:
        from evopop.evolution.ray_backend import RayBackend
        from evopop.execution.cluster import RaySettings

        return RayBackend(ray or RaySettings(), workers, env_worker_cpus)
    workers = workers or default_workers()
    if kind is Placement.LOCAL or workers == 1:
        return LocalBackend()
    return ProcessBackend(workers)
