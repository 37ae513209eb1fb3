"""`map_tasks`: a stateless task pool on top of any worker pool (members, sweep runs).

Each free worker takes the next task; a task whose worker died is re-run on a fresh worker (a
task is a pure function of its message, so the result is the same), up to
`MAX_DEATHS_PER_TASK` times. A worker that cannot be replaced (its node was lost and the
cluster has no room left) is retired and the task goes to the next free worker: the map ends
as long as one worker serves. Any failure closes the pool: replies still in flight must never
be taken for a later map's.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from evopop.errors import one_line
from evopop.execution.pool import (
    MAX_DEATHS_PER_TASK,
    Death,
    Failure,
    Reply,
    WorkerError,
    WorkerPool,
)

OnResult = Callable[[int, Any], None]
LOG = logging.getLogger("evopop.execution")


def map_tasks(pool: WorkerPool, tasks: Sequence[Any], what: str = "task",
              on_result: OnResult | None = None) -> list[Any]:
    """Every task's result, in task order; `on_result(index, result)` as each arrives.
    `what` names a task in error messages ("member 2 failed in worker 1: ...")."""
    try:
        return _run(pool, tasks, what, on_result)
    except BaseException:
        pool.close(abort=True)
        raise


def _run(pool: WorkerPool, tasks: Sequence[Any], what: str,
         on_result: OnResult | None) -> list[Any]:
    messages = [pool.put(task) for task in tasks]
    todo = deque(range(len(tasks)))
    free = deque(pool.serving()[:len(tasks)])
    running: dict[int, int] = {}  # worker -> task index
    killed: Counter[int] = Counter()
    results: dict[int, Any] = {}
    while todo or running:
        while todo and free:
            index, worker = todo.popleft(), free.popleft()
            pool.submit(worker, messages[index])
            running[worker] = index
        for outcome in pool.wait(list(running)):
            index = running.pop(outcome.worker)
            if isinstance(outcome, Failure):
                raise WorkerError(f"{what} {index} failed in worker {outcome.worker}:\n"
                                  f"{outcome.traceback}")
            if isinstance(outcome, Death):
                killed[index] += 1
                if killed[index] > MAX_DEATHS_PER_TASK:
                    raise WorkerError(f"{what} {index} killed its worker {killed[index]} times "
                                      f"(last: {outcome.how})")
                LOG.warning("worker %d died while running %s %d (%s): running it again",
                            outcome.worker, what, index, one_line(outcome.how)[:300])
                todo.appendleft(index)
                if not pool.restart(outcome.worker):
                    _take_over(pool, what, running, free)
                    continue
            elif isinstance(outcome, Reply):
                results[index] = outcome.value
                if on_result is not None:
                    on_result(index, outcome.value)
            free.append(outcome.worker)
    return [results[i] for i in range(len(tasks))]


def _take_over(pool: WorkerPool, what: str, running: dict[int, int], free: deque[int]) -> None:
    """After a worker was retired, the others take its work (idle ones too: a map of fewer
    tasks than workers leaves some unused), unless none is left."""
    free.extend(w for w in pool.serving() if w not in running and w not in free)
    if not running and not free:
        raise WorkerError(f"every worker was lost and none could be replaced: no {what} can run "
                          f"(was a Ray node lost, leaving no room?)")
