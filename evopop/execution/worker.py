"""What every worker does, wherever it runs: one torch thread and glibc keeping freed memory
(`prepare_trainer`), and a handler built from a picklable factory on its first message (so a
broken handler is reported with its traceback)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

Handler = Callable[..., Any]
"""Called with each message's arguments; may have a `close()` for when its worker stops."""
HandlerFactory = Callable[[], Handler]


def set_one_thread() -> int:
    """One torch thread; returns the count before. The count changes float results (so every
    placement must use the same), and two cores oversubscribed by torch's intra-op pool run
    slower than one thread each."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


def prepare_trainer() -> None:
    """What a process that trains does first: `set_one_thread`, and `keep_freed_memory` (a
    learning cycle frees and reallocates the same buffers thousands of times)."""
    from evopop.execution.memory import keep_freed_memory

    set_one_thread()
    keep_freed_memory()


@contextmanager
def one_thread() -> Iterator[None]:
    """`set_one_thread` for work in this process, restoring the count afterwards."""
    import torch

    before = set_one_thread()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _same(handler: Handler) -> Handler:
    return handler


def stateless(handler: Handler) -> HandlerFactory:
    """A factory for a module-level function that keeps nothing between messages."""
    return partial(_same, handler)


class Host:
    """A worker's handler, built on the first message and closed with the worker."""

    def __init__(self, factory: HandlerFactory) -> None:
        self.factory = factory
        self.handler: Handler | None = None

    def pid(self) -> int:
        return os.getpid()

    def handle(self, *args: Any) -> Any:
        if self.handler is None:
            self.handler = self.factory()
        return self.handler(*args)

    def close(self) -> None:
        close = getattr(self.handler, "close", None)
        self.handler = None
        if close is not None:
            close()
