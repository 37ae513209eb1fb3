"""The execution layer's pools: a dead worker is replaced and its task re-run, a task that keeps
killing its worker fails after the limit, an aborting close kills busy workers, and a task's
exception comes back with its traceback."""

import os
import signal
import time
from pathlib import Path

import pytest

from evopop.execution.inline import InlinePool
from evopop.execution.pool import MAX_DEATHS_PER_TASK, WorkerError
from evopop.execution.processes import ProcessPool
from evopop.execution.tasks import map_tasks
from evopop.execution.worker import stateless


def _die_once(marker: Path) -> int:
    """Kills its worker the first time it sees `marker` missing, then returns the pid."""
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def _die(_: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fail(value: int) -> None:
    raise ValueError(f"bad value {value}")


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _square(value: int) -> int:
    return value * value


@pytest.fixture
def pool(request):
    handler = request.param
    made = ProcessPool([stateless(handler)] * 2)
    yield made
    made.close(abort=True)


@pytest.mark.parametrize("pool", [_square], indirect=True)
def test_results_come_back_in_task_order(pool):
    seen = []
    assert map_tasks(pool, list(range(5)), on_result=lambda i, r: seen.append(i)) == [
        0, 1, 4, 9, 16]
    assert sorted(seen) == list(range(5))


@pytest.mark.parametrize("pool", [_die_once], indirect=True)
def test_a_killed_worker_is_replaced_and_its_task_rerun(pool, tmp_path):
    first = pool.pids()
    pids = map_tasks(pool, [tmp_path / "a", tmp_path / "b"])
    assert pool.restarts == 2
    assert set(pids).isdisjoint(first) and set(pids) == set(pool.pids())


@pytest.mark.parametrize("pool", [_die], indirect=True)
def test_a_task_that_keeps_killing_its_worker_fails_after_the_limit(pool):
    with pytest.raises(WorkerError, match=f"job 0 killed its worker {MAX_DEATHS_PER_TASK + 1} "
                                          f"times \\(last: exit code -9\\)"):
        map_tasks(pool, [0], "job")
    assert pool.closed


@pytest.mark.parametrize("pool", [_sleep], indirect=True)
def test_an_aborting_close_kills_busy_workers(pool):
    pids = pool.pids()
    for worker in range(2):
        pool.submit(worker, 60.0)
    start = time.monotonic()
    pool.close(abort=True)
    assert time.monotonic() - start < 5
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("pool", [_fail], indirect=True)
def test_an_exception_in_a_task_comes_back_with_its_traceback(pool):
    with pytest.raises(WorkerError, match=r"member [01] failed in worker [01]:") as raised:
        map_tasks(pool, [5, 7], "member")
    assert "Traceback" in str(raised.value) and "ValueError: bad value" in str(raised.value)


def test_an_inline_pool_raises_a_task_exception_as_it_is():
    with pytest.raises(ValueError, match="bad value 3"):
        map_tasks(InlinePool([stateless(_fail)]), [3])
