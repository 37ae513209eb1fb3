"""Engines plan a generation: stackable members in batched chunks, the rest one by one."""

import pytest

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.agents.checkpoint import agent_to_bytes
from evopop.envs import EnvSpec, make_env
from evopop.evolution.engine import Engine
from evopop.evolution.plan import chunk_groups, plan_tasks
from evopop.evolution.task import GroupTask, TrainTask

ENV = EnvSpec(id="CartPoleNoVel-v1", num_envs=2)


def _tasks(specs: list[NetSpec], env: EnvSpec = ENV) -> list[TrainTask]:
    probe = make_env(env)
    spaces = probe.observation_space, probe.action_space
    probe.close()
    agents = [Agent(*spaces, spec, PPOParams(learn_step=8, batch_size=8), seed=i)
              for i, spec in enumerate(specs)]
    return [TrainTask(agent_to_bytes(a), env, env, None, 16, i, (0, 16), 1, 0)
            for i, a in enumerate(agents)]


def test_chunks_are_near_equal_largest_first_and_fill_the_workers():
    assert chunk_groups([[0, 1, 2, 3]], 1) == [[0, 1, 2, 3]]
    assert chunk_groups([[0, 1, 2, 3]], 2) == [[0, 1], [2, 3]]
    assert chunk_groups([[0, 1, 2, 3, 4], [5]], 2) == [[0, 1, 2], [3, 4], [5]]
    assert chunk_groups([[0], [1, 2]], 4) == [[0], [1], [2]]


@pytest.mark.parametrize("engine,units", [
    (Engine.PER_MEMBER, [TrainTask] * 5),
    (Engine.BATCHED, [GroupTask, TrainTask]),
    (Engine.AUTO, [TrainTask] * 5),  # a chunk of 4 is below AUTO_MIN_GROUP
])
def test_plans_group_stackable_members_and_scatter_results_back(engine, units):
    small, wide = NetSpec(hidden_size=8, head=(8,)), NetSpec(hidden_size=16, head=(8,))
    tasks = _tasks([small, small, wide, small, small])
    plan = plan_tasks(tasks, engine, workers=1)
    assert [type(u) for u in plan.units] == units
    assert sorted(i for s in plan.slots for i in s) == list(range(5))
    if engine is Engine.BATCHED:
        assert plan.slots == [[0, 1, 3, 4], [2]]
        assert [t.seed for t in plan.units[0].members] == [0, 1, 3, 4]
    fake = [[f"r{i}" for i in s] if len(s) > 1 else f"r{s[0]}" for s in plan.slots]
    assert plan.scatter(fake) == [f"r{i}" for i in range(5)]


def test_env_workers_always_train_one_by_one():
    env = EnvSpec(id="CartPoleNoVel-v1", num_envs=2, vectorization="independent",
                  env_workers=1)
    plan = plan_tasks(_tasks([NetSpec()] * 3, env), Engine.BATCHED, workers=1)
    assert all(isinstance(u, TrainTask) for u in plan.units)
