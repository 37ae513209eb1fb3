"""Multi-node Ray on one machine, with Ray's own `Cluster`: a head and worker nodes, each with
its own raylet, CPUs and a custom resource that member actors reserve. Members spread over the
nodes, a node is killed mid-generation, and the run still ends with the local run's elite:
its member is re-trained on a fresh actor where the cluster has room, or by the surviving
actors where it has none."""

import threading
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from evopop import training as runner  # noqa: E402
from evopop.config import parse_config  # noqa: E402
from evopop.execution.ray_pool import RayPool  # noqa: E402
from evopop.rundir import RunDir  # noqa: E402

SLOT = "evopop_member"
CONFIG = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 4},
    "net": {"cell": "lstm", "hidden_size": 16, "head": [16]},
    "ppo": {"learn_step": 32, "batch_size": 64, "update_epochs": 2},
    "max_steps": 4096,
    "seed": 5,
    "eval_episodes": 2,
    "evolution": {"population_size": 3, "tournament_size": 2, "evo_steps": 2048},
}


@pytest.fixture
def cluster():
    """A head that runs no member (it has CPUs but no member slot) and `add_node`s."""
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    yield made
    if ray.is_initialized():
        ray.shutdown()
    made.shutdown()


def _add_nodes(cluster: Cluster, count: int) -> dict[str, object]:
    nodes = [cluster.add_node(num_cpus=1, resources={SLOT: 1}) for _ in range(count)]
    cluster.wait_for_nodes()
    return {node.node_id: node for node in nodes}


def _train(tmp_path: Path, name: str, parallel: int | None = None, **changes) -> dict:
    config = parse_config({**CONFIG, **changes})
    return runner.run_training(config, tmp_path / name, progress=False,
                               parallel_members=parallel).to_json()


def _kill_a_node_mid_generation(monkeypatch, cluster: Cluster, nodes: dict) -> dict:
    """On the first member submitted, notes where the actors run, then kills the node of
    worker 1 one second into the generation (ungracefully: as a machine is lost)."""
    seen: dict = {}
    real_submit = RayPool.submit

    def submit(self, worker, *args):
        if not seen:
            seen.update(pool=self, placed=self.node_ids())
            victim = nodes[seen["placed"][1]]
            seen["victim"] = victim.node_id
            threading.Timer(1.0, cluster.remove_node, (victim,),
                            {"allow_graceful": False}).start()
        real_submit(self, worker, *args)

    monkeypatch.setattr(RayPool, "submit", submit)
    return seen


def _same_generations(tmp_path: Path, a: str, b: str) -> None:
    logs = [RunDir(tmp_path / name).generations() for name in (a, b)]
    runs = [[[(m.id, m.fitness, m.eval_returns, m.hparams) for m in line.members]
             for line in log] for log in logs]
    assert len(runs[0]) == 2 and runs[0] == runs[1]


@pytest.mark.slow
def test_a_lost_node_s_member_is_retrained_on_a_spare_node(tmp_path, monkeypatch, cluster):
    nodes = _add_nodes(cluster, 3)
    local = _train(tmp_path, "local", backend="local")
    seen = _kill_a_node_mid_generation(monkeypatch, cluster, nodes)
    ray_config = {"address": cluster.address, "resources_per_member": {SLOT: 1}}
    on_ray = _train(tmp_path, "ray", backend="ray", ray=ray_config, parallel=2)
    placed, pool = seen["placed"], seen["pool"]
    assert len(set(placed)) == 2 and set(placed) <= set(nodes)  # two worker nodes, not the head
    assert pool.restarts == 1 and pool.serving() == [0, 1]  # a fresh actor took the member
    assert on_ray["elite_sha256"] == local["elite_sha256"]
    _same_generations(tmp_path, "local", "ray")


@pytest.mark.slow
def test_without_room_the_surviving_node_trains_the_lost_member(tmp_path, monkeypatch, cluster):
    nodes = _add_nodes(cluster, 2)
    local = _train(tmp_path, "local", backend="local")
    seen = _kill_a_node_mid_generation(monkeypatch, cluster, nodes)
    ray_config = {"address": cluster.address, "resources_per_member": {SLOT: 1}}
    on_ray = _train(tmp_path, "ray", backend="ray", ray=ray_config)
    placed, pool = seen["placed"], seen["pool"]
    assert sorted(placed) == sorted(nodes)  # one member actor on each worker node
    assert pool.restarts == 0 and pool.serving() == [0]  # no room: worker 1 retired
    assert on_ray["elite_sha256"] == local["elite_sha256"]
    _same_generations(tmp_path, "local", "ray")
