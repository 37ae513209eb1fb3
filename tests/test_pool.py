"""The execution layer's pools: a dead worker is replaced and its task re-run (or, with no room
for a new one, retired while the others take its work), a task that keeps killing its worker
fails after the limit, an aborting close kills busy workers, and a task's exception comes back
with its traceback."""

import os
import signal
import time
from pathlib import Path

import pytest

from evopop.execution.inline import InlinePool
from evopop.execution.pool import MAX_DEATHS_PER_TASK, Death, Reply, WorkerError
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
    # both re-runs ran on fresh workers (a fast restart may take both: workers fork in ms)
    assert set(pids).isdisjoint(first) and set(pids) <= set(pool.pids())
    assert set(pool.pids()).isdisjoint(first)


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


class _NoRoomPool:
    """Runs a worker's task when it is waited on. The workers in `dies` die on their next task
    and can never be replaced (as when a Ray node is lost and the cluster is full)."""

    def __init__(self, size: int, dies: set[int]) -> None:
        self.size, self.restarts, self.dies = size, 0, set(dies)
        self.retired: set[int] = set()
        self.ran: list[tuple[int, int]] = []  # (task, worker)
        self._messages: dict[int, int] = {}

    def put(self, value):
        return value

    def submit(self, worker, task):
        self._messages[worker] = task

    def wait(self, pending, timeout=None):
        worker = min(pending)
        task = self._messages.pop(worker)
        if worker in self.dies:
            self.dies.discard(worker)
            return [Death(worker, "its node was lost")]
        self.ran.append((task, worker))
        return [Reply(worker, task * task)]

    def restart(self, worker):
        self.retired.add(worker)
        return False

    def serving(self):
        return [w for w in range(self.size) if w not in self.retired]

    def pids(self):
        return []

    def close(self, abort=False):
        pass


def test_a_worker_that_cannot_be_replaced_is_retired_and_the_others_take_its_task():
    pool = _NoRoomPool(2, dies={1})
    assert map_tasks(pool, [1, 2, 3]) == [1, 4, 9]
    assert pool.serving() == [0] and {worker for _, worker in pool.ran} == {0}
    assert (2, 0) in pool.ran  # the lost worker's task, re-run by the survivor
    assert map_tasks(pool, [4, 5]) == [16, 25]  # later maps run on the survivor alone


def test_an_idle_worker_takes_over_a_retired_worker_s_task():
    pool = _NoRoomPool(3, dies={0})
    assert map_tasks(pool, [7]) == [49]  # one task: workers 1 and 2 were not in use
    assert pool.ran == [(7, 1)] and pool.serving() == [1, 2]


def test_when_no_worker_is_left_the_map_fails_with_a_message():
    with pytest.raises(WorkerError, match="every worker was lost and none could be replaced"):
        map_tasks(_NoRoomPool(2, dies={0, 1}), [1, 2], "member task")


def _preloaded(_: object) -> tuple[bool, int]:
    import sys

    return "torch" in sys.modules and "gymnasium" in sys.modules, os.getppid()


def test_workers_fork_from_a_server_that_imported_the_heavy_libraries():
    """No worker pays for importing torch and Gymnasium: each forks from the fork server, a
    child of this process, with them loaded."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        pytest.skip("no fork server on this platform: workers are spawned")
    pool = ProcessPool([stateless(_preloaded)] * 2, torch_worker=False)
    try:
        replies = map_tasks(pool, [0, 1])
    finally:
        pool.close()
    assert all(loaded for loaded, _ in replies)
    assert {parent for _, parent in replies} != {os.getpid()}  # not forked by this process


def _imported(name: str) -> bool:
    import sys

    return name in sys.modules


def test_a_fork_server_started_with_preload_hands_its_imports_to_every_worker():
    """`evopop train` starts the server with the member workers' own modules (named by the
    caller): a worker has them before its first task, envpool with its classic-control
    envs only (`evopop.envs.envpool_import`). In a fresh interpreter, as this process's fork
    server is running already."""
    import multiprocessing as mp
    import subprocess
    import sys

    if "forkserver" not in mp.get_all_start_methods():
        pytest.skip("no fork server on this platform: workers are spawned")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from test_pool import _imported\n"
        "from evopop.execution.processes import ProcessPool, start_fork_server\n"
        "from evopop.execution.tasks import map_tasks\n"
        "from evopop.execution.worker import stateless\n"
        "from evopop.evolution.engine import WORKER_MODULES\n"
        "if __name__ == '__main__':\n"
        "    start_fork_server(WORKER_MODULES)\n"
        "    pool = ProcessPool([stateless(_imported)], torch_worker=False)\n"
        "    print(map_tasks(pool, ['evopop.evolution.backends', 'envpool',\n"
        "                           'envpool.classic_control.registration',\n"
        "                           'envpool.atari.registration', 'evopop.training']))\n"
        "    pool.close()\n")
    out = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[True, True, True, False, False]"


def _variable(name: str) -> str | None:
    return os.environ.get(name)


def test_a_worker_sees_the_parents_environment_as_it_is_when_the_worker_starts(monkeypatch):
    """As a spawned worker would: the fork server's environment dates from its own start."""
    ProcessPool([stateless(_square)]).close()  # the fork server is running from here on
    monkeypatch.setenv("EVOPOP_TEST_LATE_VARIABLE", "set after the fork server started")
    pool = ProcessPool([stateless(_variable)])
    try:
        assert map_tasks(pool, ["EVOPOP_TEST_LATE_VARIABLE"]) == [
            "set after the fork server started"]
    finally:
        pool.close()
