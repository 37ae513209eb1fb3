"""`map_tasks`: a stateless task pool on top of any worker pool (members, sweep runs).

Each free worker takes the next task; a task whose worker died is re-run on a fresh worker (a
task is a pure function of its message, so the result is the same), up to
`MAX_DEATHS_PER_TASK` times. Any failure closes the pool: replies still in flight must never
be taken for a later map's.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from evopop.execution.pool import (
    MAX_DEATHS_PER_TASK,
    Death,
    Failure,
    Reply,
    WorkerError,
    WorkerPool,
)

OnResult = Callable[[int, Any], None]


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
    free = deque(range(min(pool.size, len(tasks))))
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
                pool.restart(outcome.worker)
                todo.appendleft(index)
            elif isinstance(outcome, Reply):
                results[index] = outcome.value
                if on_result is not None:
                    on_result(index, outcome.value)
            free.append(outcome.worker)
    return [results[i] for i in range(len(tasks))]
