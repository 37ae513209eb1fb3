"""The pool as local processes talking over pipes, forked from a fork server.

The fork server is a fresh process (no thread pools, no open envs of the parent's) that imports
the heavy libraries once (`PRELOAD`); each worker forks from it in milliseconds and shares those
pages. Spawned workers import them each: torch, the `torch._dynamo` that torch's optimizers
imported on first use (evopop's own `FusedAdam` no longer does) and envpool took 4-5 s per
worker at every run's start on 2 cores, a tenth of a 10-generation W1 run. Where the platform
has no fork server, workers are spawned. A worker serves messages until told to stop or until
the parent goes away (EOF on its pipe, e.g. after a kill -9).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.forkserver
import os
import signal
import traceback
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from evopop.execution.pool import CLOSE_TIMEOUT_S, Death, Failure, Outcome, Reply, WorkerError
from evopop.execution.worker import HandlerFactory, Host, prepare_trainer

_GONE = (BrokenPipeError, ConnectionResetError, EOFError, OSError)
PRELOAD = ("torch", "gymnasium")
"""Imported by the fork server before it forks any worker (a missing one is skipped); the
caller adds its own (evopop's env layer: envpool, `evopop.evolution.engine.WORKER_MODULES`)."""


def start_fork_server(preload: Sequence[str] = ()) -> BaseContext:
    """The context workers start in: the fork server, started now (if it is not running) so
    that its imports overlap whatever this process does until its first worker; spawn where
    the platform has no fork server. The first start imports `preload` after `PRELOAD` (the
    caller's own worker modules, which this layer must not name)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([*PRELOAD, *preload])
    multiprocessing.forkserver.ensure_running()
    return context


@dataclass(frozen=True)
class _Ok:
    value: Any


@dataclass(frozen=True)
class _Raised:
    traceback: str


def _serve(conn: Connection, factory: HandlerFactory, torch_worker: bool,
           environ: dict[str, str]) -> None:
    """A worker's life: Ctrl-C is the parent's to handle, so it is ignored here. The worker
    takes the parent's environment as it is now, as a spawned one would (the fork server's
    is its own from when it started)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environ)
    if torch_worker:
        prepare_trainer()
    host = Host(factory)
    try:
        while True:
            try:
                args = conn.recv()
            except EOFError:
                return
            if args is None:
                return
            try:
                reply: _Ok | _Raised = _Ok(host.handle(*args))
            except Exception:
                reply = _Raised(traceback.format_exc())
            try:
                conn.send(reply)
            except _GONE:
                return
    finally:
        host.close()


class ProcessPool:
    """Workers are processes forked from the fork server. `daemon=False` lets a worker start
    processes of its own (subprocess envs, env workers); daemonic workers die with an exiting
    parent. `torch_worker=False`: the handlers never run torch (env copies), so workers leave
    its thread count alone."""

    def __init__(self, factories: Sequence[HandlerFactory], daemon: bool = False,
                 name: str = "evopop-worker", torch_worker: bool = True) -> None:
        self.size = len(factories)
        self.restarts = 0
        self.closed = False
        self._factories = list(factories)
        self._daemon = daemon
        self._torch_worker = torch_worker
        self._name = name
        self._context = start_fork_server()
        self._procs: dict[int, BaseProcess] = {}
        self._conns: dict[int, Connection] = {}

    def _start(self, worker: int) -> None:
        if self.closed:
            raise WorkerError("this worker pool was closed (after a failure or Ctrl-C)")
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(theirs, self._factories[worker], self._torch_worker,
                                 dict(os.environ)),
            name=f"{self._name}-{worker}", daemon=self._daemon)
        process.start()
        theirs.close()
        self._procs[worker], self._conns[worker] = process, ours

    def put(self, value: Any) -> Any:
        return value

    def submit(self, worker: int, *args: Any) -> None:
        """A worker that is dead already is reported by `wait`, not here."""
        if worker not in self._procs:
            self._start(worker)
        with contextlib.suppress(*_GONE):
            self._conns[worker].send(args)

    def _receive(self, worker: int) -> Outcome | None:
        """The worker's reply, its death, or None while it is still at work."""
        try:
            if self._conns[worker].poll():
                reply = self._conns[worker].recv()
                if isinstance(reply, _Raised):
                    return Failure(worker, reply.traceback)
                return Reply(worker, reply.value)
        except _GONE:
            pass
        process = self._procs[worker]
        if process.is_alive():
            return None
        process.join()
        return Death(worker, f"exit code {process.exitcode}")

    def wait(self, pending: Collection[int], timeout: float | None = None) -> list[Outcome]:
        handles: list[Any] = [self._conns[w] for w in pending]
        if not wait(handles + [self._procs[w].sentinel for w in pending], timeout):
            return []
        outcomes = [self._receive(worker) for worker in sorted(pending)]
        return [outcome for outcome in outcomes if outcome is not None]

    def _discard(self, worker: int) -> None:
        process = self._procs.pop(worker)
        if process.is_alive():
            process.kill()
        process.join()
        self._conns.pop(worker).close()

    def restart(self, worker: int) -> bool:
        """A local process always has room."""
        self._discard(worker)
        self.restarts += 1
        self._start(worker)
        return True

    def serving(self) -> list[int]:
        return list(range(self.size))

    def pids(self) -> list[int]:
        for worker in range(self.size):
            if worker not in self._procs:
                self._start(worker)
        return [self._procs[w].pid or 0 for w in range(self.size)]

    def close(self, abort: bool = False) -> None:
        """Lets workers close their handlers (for up to `CLOSE_TIMEOUT_S`), or kills them at
        once when aborting; either way none is left running."""
        self.closed = True
        for worker, conn in self._conns.items():
            if abort:
                self._procs[worker].kill()
            else:
                with contextlib.suppress(*_GONE):
                    conn.send(None)
        for process in self._procs.values():
            process.join(timeout=CLOSE_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self._conns.values():
            conn.close()
        self._procs, self._conns = {}, {}
