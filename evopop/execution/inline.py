"""The pool of one (or more) handlers in this process: members or sweep runs one at a time."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from typing import Any

from evopop.execution.pool import Outcome, Reply
from evopop.execution.worker import HandlerFactory, Host, one_thread


class InlinePool:
    """Runs each message when it is waited for; a handler's exception is raised as it is."""

    def __init__(self, factories: Sequence[HandlerFactory]) -> None:
        self.size = len(factories)
        self.restarts = 0
        self._hosts = [Host(factory) for factory in factories]
        self._messages: dict[int, tuple[Any, ...]] = {}

    def put(self, value: Any) -> Any:
        return value

    def submit(self, worker: int, *args: Any) -> None:
        self._messages[worker] = args

    def wait(self, pending: Collection[int], timeout: float | None = None) -> list[Outcome]:
        """Runs the next message here, to its end: an in-process handler cannot time out."""
        worker = min(pending)
        with one_thread():
            return [Reply(worker, self._hosts[worker].handle(*self._messages.pop(worker)))]

    def restart(self, worker: int) -> bool:
        self._hosts[worker].close()
        self._hosts[worker] = Host(self._hosts[worker].factory)
        self.restarts += 1
        return True

    def serving(self) -> list[int]:
        return list(range(self.size))

    def pids(self) -> list[int]:
        return [os.getpid()] * self.size

    def close(self, abort: bool = False) -> None:
        self._messages.clear()
        for host in self._hosts:
            host.close()
