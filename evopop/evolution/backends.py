"""Where members' learning cycles run: in this process, or in local worker processes.

Both run the same `run_task` on the same bytes, so they give bit-identical results.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Sequence
from enum import Enum
from typing import Protocol

import torch

from evopop.evolution.task import TaskResult, TrainTask, run_task


class BackendKind(str, Enum):
    LOCAL = "local"
    PROCESSES = "processes"


class Backend(Protocol):
    def map(self, tasks: Sequence[TrainTask]) -> list[TaskResult]: ...

    def close(self, abort: bool = False) -> None: ...


class LocalBackend:
    """Members one after another in this process."""

    def map(self, tasks: Sequence[TrainTask]) -> list[TaskResult]:
        return [run_task(task) for task in tasks]

    def close(self, abort: bool = False) -> None:
        """Nothing to release."""


def _init_worker() -> None:
    # Two cores oversubscribed by torch's intra-op pool run slower than one thread each.
    torch.set_num_threads(1)
    # Ctrl-C is the parent's to handle: it terminates the workers and keeps the checkpoint.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessBackend:
    """Members in parallel in `workers` spawned processes that live for the whole run.

    Spawn (not fork) keeps workers free of the parent's torch thread pools and open envs.
    """

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool = context.Pool(workers, initializer=_init_worker)

    def map(self, tasks: Sequence[TrainTask]) -> list[TaskResult]:
        return self._pool.map(run_task, tasks, chunksize=1)

    def close(self, abort: bool = False) -> None:
        """Waits for idle workers to exit, or kills them mid-task when aborting."""
        if abort:
            self._pool.terminate()
        else:
            self._pool.close()
        self._pool.join()


def default_workers() -> int:
    return os.cpu_count() or 1


def make_backend(kind: BackendKind, workers: int | None) -> Backend:
    workers = workers or default_workers()
    if kind is BackendKind.LOCAL or workers == 1:
        return LocalBackend()
    return ProcessBackend(workers)
