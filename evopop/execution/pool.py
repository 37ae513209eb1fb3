"""The worker-pool protocol every placement implements (in this process, local processes, Ray
actors), and what a pool reports back: a reply, a failure with its traceback, or a death."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

CLOSE_TIMEOUT_S = 10.0
"""How long a closing pool lets its workers close their envs before it kills them."""
MAX_DEATHS_PER_TASK = 3
"""A task that kills its worker more often than this is failing deterministically: give up."""


class WorkerError(RuntimeError):
    """A task raised in a worker (the message carries its traceback), or kept killing it."""


@dataclass(frozen=True)
class Reply:
    worker: int
    value: Any


@dataclass(frozen=True)
class Failure:
    """The handler raised: its traceback, as text (the exception may not unpickle here)."""

    worker: int
    traceback: str


@dataclass(frozen=True)
class Death:
    """The worker is gone (killed, crashed, its node lost): restart it and resend."""

    worker: int
    how: str


Outcome = Reply | Failure | Death


class WorkerPool(Protocol):
    """`size` persistent workers, each hosting a handler from its own factory.

    A worker starts on its first message. `wait` blocks until at least one of the `pending`
    workers replied, failed or died, or until `timeout` seconds passed (then it returns []).
    A dead worker that cannot be replaced (its Ray node is gone and the rest of the cluster is
    full) is retired: `serving` leaves it out, and its work goes to the others.
    Workers ignore Ctrl-C: the parent decides, usually by `close(abort=True)`, which kills busy
    workers (a graceful close lets them close their envs for up to `CLOSE_TIMEOUT_S`).
    """

    size: int
    restarts: int

    def put(self, value: Any) -> Any:
        """A handle for a value sent to several workers (Ray: stored once in the object store)."""
        ...

    def submit(self, worker: int, *args: Any) -> None: ...

    def wait(self, pending: Collection[int], timeout: float | None = None) -> list[Outcome]: ...

    def restart(self, worker: int) -> bool:
        """Replace a dead worker by a fresh one from the same factory; False when there is no
        room for one (the worker is retired)."""
        ...

    def serving(self) -> list[int]:
        """The workers not retired, in order."""
        ...

    def pids(self) -> list[int]:
        """Every serving worker's process id, in order (starting those not started yet)."""
        ...

    def close(self, abort: bool = False) -> None: ...


def default_workers() -> int:
    return os.cpu_count() or 1
