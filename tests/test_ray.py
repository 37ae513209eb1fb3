"""The Ray backend on a local Ray instance: the same results as the local backends, a killed
actor replaced without changing the result, env workers as actors, sweeps as Ray tasks."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from evopop import training as runner  # noqa: E402
from evopop.agents.ppo import recompute_log_probs  # noqa: E402
from evopop.config import parse_config  # noqa: E402
from evopop.envs import EnvSpec  # noqa: E402
from evopop.execution import Placement, ray_pool  # noqa: E402
from evopop.execution.cluster import RayError, RaySettings  # noqa: E402
from evopop.execution.ray_pool import RayPool, Reservation  # noqa: E402
from evopop.execution.tasks import map_tasks  # noqa: E402
from evopop.execution.worker import stateless  # noqa: E402
from evopop.rollouts import make_rollout_envs  # noqa: E402
from evopop.rundir import RunDir  # noqa: E402
from evopop.sweep.run import run_plan  # noqa: E402
from evopop.sweep.spec import plan_sweep  # noqa: E402

TINY = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 4},
    "net": {"cell": "lstm", "hidden_size": 16, "head": [16]},
    "ppo": {"learn_step": 32, "batch_size": 64, "update_epochs": 2},
    "max_steps": 768,
    "seed": 5,
    "eval_episodes": 2,
    "evolution": {"population_size": 3, "tournament_size": 2, "evo_steps": 256},
}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _run(tmp_path: Path, name: str, **changes) -> dict:
    config = parse_config({**TINY, **changes})
    return runner.run_training(config, tmp_path / name, progress=False, parallel_members=1
                                if changes.get("backend") == "local" else None).to_json()


def test_ray_backend_gives_the_local_elite_and_metrics(tmp_path):
    local = _run(tmp_path, "local", backend="local")
    on_ray = _run(tmp_path, "ray", backend="ray")
    assert on_ray["elite_sha256"] == local["elite_sha256"]
    assert on_ray["best_fitness"] == local["best_fitness"]
    logs = [RunDir(tmp_path / name).generations() for name in ("local", "ray")]
    results = [[[(m.id, m.fitness, m.eval_returns, m.hparams) for m in line.members]
                for line in log] for log in logs]
    assert len(results[0]) > 1 and results[0] == results[1]  # every member, every generation


def test_killed_actor_is_replaced_and_the_run_ends_the_same(tmp_path, monkeypatch):
    slow = {"max_steps": 4096, "evolution": {**TINY["evolution"], "evo_steps": 2048}}
    reference = _run(tmp_path, "local", backend="local", **slow)
    real_submit, pools = RayPool.submit, []

    def submit_with_a_kill(self, worker, *args):
        if not pools:  # first generation: kill an actor half a second into training
            pools.append(self)
            threading.Timer(0.5, os.kill, (self.pids()[1], signal.SIGKILL)).start()
        real_submit(self, worker, *args)

    monkeypatch.setattr(RayPool, "submit", submit_with_a_kill)
    summary = _run(tmp_path, "ray", backend="ray", **slow)
    assert pools[0].restarts == 1  # the dead actor was replaced once, its member re-trained
    assert summary["elite_sha256"] == reference["elite_sha256"]


def test_env_workers_as_ray_actors_collect_exact_rollouts_and_survive_a_kill(make_agent):
    spec = EnvSpec(id="PendulumNoVel-v1", num_envs=2, vectorization="independent",
                   env_workers=2, env_worker_backend="ray")
    envs = make_rollout_envs(spec, RaySettings())
    try:
        agent = make_agent(envs, learn_step=260, max_seq_len=8, batch_size=64)
        envs.start(0, 1)
        buf = envs.collect(agent, 260)
        assert buf.obs.shape[:2] == (260, 2) and buf.truncated.sum() == 2
        ratio = np.exp(recompute_log_probs(agent, buf) - buf.log_probs)
        assert np.abs(ratio - 1.0).max() < 1e-5
        victim = envs.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        buf = envs.collect(agent, 50)
        assert envs.restarts == 1 and envs.worker_pids()[0] != victim
        assert buf.obs.shape[:2] == (50, 2) and buf.episode_start[0, 0]
    finally:
        envs.close()


def test_sweep_runs_as_ray_tasks_match_local_runs(tmp_path):
    spec = {"base": TINY, "grid": {"ppo.lr": [1e-3, 3e-4]}, "seeds": [0]}
    plan = plan_sweep(spec, tmp_path, "tiny")
    local = run_plan(plan, tmp_path / "local", parallel_runs=1, progress=False)
    on_ray = run_plan(plan, tmp_path / "ray", progress=False, backend=Placement.RAY)
    assert [r["best_fitness"] for r in on_ray] == [r["best_fitness"] for r in local]
    assert (tmp_path / "ray" / "summary.md").is_file()


def test_core_never_imports_ray():
    code = ("import sys, evopop.cli, evopop.training, evopop.sweep, "
            "evopop.rollouts, evopop.execution.tasks; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_env_workers_that_cannot_be_placed_fail_with_a_message(monkeypatch):
    from evopop.rollouts import make

    monkeypatch.setattr(make, "PLACEMENT_TIMEOUT_S", 2.0)
    with pytest.raises(RayError, match="could not be placed"):
        make_rollout_envs(EnvSpec(id="CartPoleNoVel-v1", num_envs=2, vectorization="independent",
                                  env_workers=2, env_worker_backend="ray"),
                          RaySettings(num_cpus_per_env_worker=1.5))


def test_an_actor_without_room_to_restart_is_retired_and_the_others_finish(monkeypatch):
    monkeypatch.setattr(ray_pool, "has_room", lambda needs: False)  # as if its node were lost
    monkeypatch.setattr(ray_pool, "ROOM_WAIT_S", 0.1)
    slow_square = lambda x: (time.sleep(0.2), x * x)[1]  # noqa: E731 (pickled by value)
    pool = RayPool([stateless(slow_square)] * 2, [Reservation()] * 2, owns_ray=False)
    try:
        threading.Timer(0.3, os.kill, (pool.pids()[1], signal.SIGKILL)).start()
        assert map_tasks(pool, list(range(8))) == [x * x for x in range(8)]
        assert pool.serving() == [0] and pool.restarts == 0
        assert map_tasks(pool, [3, 4]) == [9, 16]  # the next map runs on the survivor alone
    finally:
        pool.close()


def test_custom_resources_the_cluster_lacks_are_refused_with_the_numbers(tmp_path):
    with pytest.raises(RayError, match=r"needs \{'CPU': 1.0, 'evopop_member': 1.0\}.*"
                                       r"has \{'CPU': 2.0, 'evopop_member': 0.0\}"):
        _run(tmp_path, "ray", backend="ray", ray={"resources_per_member": {"evopop_member": 1}})
