"""Engines plan a generation: stackable members in batched chunks, the rest one by one."""

import dataclasses

import pytest

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.agents.checkpoint import agent_to_bytes
from evopop.batched.padding import PAD_MAX_WIDTH
from evopop.envs import EnvSpec, make_env
from evopop.evolution.engine import Batching, Engine, batching
from evopop.evolution.plan import chunk_groups, plan_tasks
from evopop.evolution.task import GroupTask, TrainTask

ENV = EnvSpec(id="CartPoleNoVel-v1", num_envs=2, vectorization="sync")


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
    assert chunk_groups([[0], [1, 2]], 4) == [[1, 2], [0]]  # a group is never cut into ones
    assert chunk_groups([[0, 1, 2]], 2) == [[0, 1, 2]]


@pytest.mark.parametrize("engine,units,batched_update", [
    (Engine.PER_MEMBER, [TrainTask] * 5, None),
    (Engine.BATCHED, [GroupTask, TrainTask], True),
    (Engine.AUTO, [GroupTask, TrainTask], True),
    (Engine.COLLECTION, [GroupTask, TrainTask], False),
])
def test_plans_group_stackable_members_and_scatter_results_back(engine, units, batched_update):
    small, deep = NetSpec(hidden_size=8, head=(8,)), NetSpec(hidden_size=8, head=(8, 8))
    tasks = _tasks([small, small, deep, small, small])
    plan = plan_tasks(tasks, engine, workers=1)
    assert [type(u) for u in plan.units] == units
    assert sorted(i for s in plan.slots for i in s) == list(range(5))
    if batched_update is not None:
        assert plan.slots == [[0, 1, 3, 4], [2]]
        assert [t.seed for t in plan.units[0].members] == [0, 1, 3, 4]
        assert plan.units[0].batched_update is batched_update
    fake = [[f"r{i}" for i in s] if len(s) > 1 else f"r{s[0]}" for s in plan.slots]
    assert plan.scatter(fake) == [f"r{i}" for i in range(5)]


@pytest.mark.parametrize("engine,size,vectorization,want", [
    (Engine.AUTO, 1, "fast", Batching.NONE), (Engine.AUTO, 2, "fast", Batching.FULL),
    (Engine.AUTO, 4, "async", Batching.NONE), (Engine.BATCHED, 4, "async", Batching.FULL),
    (Engine.BATCHED, 3, "sync", Batching.FULL),
    (Engine.COLLECTION, 2, "fast", Batching.COLLECTION),
    (Engine.COLLECTION, 5, "sync", Batching.COLLECTION),
    (Engine.COLLECTION, 4, "async", Batching.NONE), (Engine.PER_MEMBER, 4, "fast", Batching.NONE),
])
def test_engines_batch_groups_as_they_say(engine, size, vectorization, want):
    """`auto` stacks every group of two or more on an env it can share (in-process copies),
    `batched` on any; `collection` batches a group's collection only, on a shared env."""
    env = EnvSpec(id="CartPoleNoVel-v1", num_envs=2, vectorization=vectorization)
    plan = plan_tasks(_tasks([NetSpec(hidden_size=8, head=(8,))] * size, env), engine,
                      workers=1)
    got = Batching.NONE if isinstance(plan.units[0], TrainTask) else \
        Batching.FULL if plan.units[0].batched_update else Batching.COLLECTION
    assert got is want == batching(engine, size, vectorization in ("fast", "sync"))


@pytest.mark.parametrize("engine,vectorization,want", [
    (Engine.AUTO, "fast", [[0, 1, 2, 3], [4]]), (Engine.BATCHED, "sync", [[0, 1, 2, 3], [4]]),
    (Engine.COLLECTION, "fast", [[0, 3], [1], [2], [4]]),
    (Engine.BATCHED, "async", [[0, 3], [1], [2], [4]]),
])
def test_members_of_other_widths_stack_where_the_update_is_stacked_on_one_env(
        engine, vectorization, want):
    """Widths pad (`evopop.batched.padding`) where the group's states live in the stack; a
    gSDE member or one wider than PAD_MAX_WIDTH keeps to its own widths."""
    env = EnvSpec(id="PendulumNoVel-v1", num_envs=2, vectorization=vectorization)
    specs = [NetSpec(hidden_size=8, head=(8,)), NetSpec(hidden_size=32, head=(8,)),
             NetSpec(hidden_size=8, head=(24,)), NetSpec(hidden_size=8, head=(8,)),
             NetSpec(hidden_size=8, head=(8,), sde=True)]
    plan = plan_tasks(_tasks(specs, env), engine, workers=1)
    assert sorted(plan.slots) == sorted(want)
    wide = [NetSpec(hidden_size=8, head=(8,)), NetSpec(hidden_size=PAD_MAX_WIDTH + 1, head=(8,))]
    assert sorted(plan_tasks(_tasks(wide, env), Engine.AUTO, workers=1).slots) == [[0], [1]]


@pytest.mark.parametrize("hidden,want", [
    ((64, 8), [[0, 1]]), ((128, 64), [[0, 1]]), ((8, 8, 8, 64), [[0, 1, 2, 3]]),
    ((16, 256, 16, 16, 16, 16, 16, 16), [[0, 2, 3, 4, 5, 6, 7], [1]]),
    ((16, 128, 16, 16, 16, 16, 16, 16), [[0, 2, 3, 4, 5, 6, 7], [1]]),
])
def test_padding_that_would_cost_too_much_arithmetic_splits_the_group(hidden, want):
    """`PAD_MAX_WASTE`: one wide member among many narrow ones trains apart
    (benchmarks/padded_group.py: 2.4-4.9x slower padded), a few narrow ones pad to it."""
    env = EnvSpec(id="PendulumNoVel-v1", num_envs=2, vectorization="fast")
    plan = plan_tasks(_tasks([NetSpec(hidden_size=h, head=(8,)) for h in hidden], env),
                      Engine.AUTO, workers=1)
    assert sorted(plan.slots) == sorted(want)


def test_env_workers_always_train_one_by_one():
    env = EnvSpec(id="CartPoleNoVel-v1", num_envs=2, vectorization="independent",
                  env_workers=1)
    plan = plan_tasks(_tasks([NetSpec()] * 3, env), Engine.BATCHED, workers=1)
    assert all(isinstance(u, TrainTask) for u in plan.units)


@pytest.mark.parametrize("engine", [Engine.AUTO, Engine.COLLECTION])
@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_a_group_s_batching_does_not_depend_on_the_workers(workers, engine):
    """The mode follows the engine and the group, so every worker count batches the same
    members the same way, only in other chunks (none of one member)."""
    small, deep = NetSpec(hidden_size=8, head=(8,)), NetSpec(hidden_size=8, head=(8, 8))
    tasks = _tasks([small] * 6 + [deep] * 3)
    plan = plan_tasks(tasks, engine, workers=workers)
    modes = {}
    for unit, slots in zip(plan.units, plan.slots, strict=True):
        assert isinstance(unit, GroupTask) and len(slots) >= 2
        modes.update({i: unit.batched_update for i in slots})
    assert modes == {i: engine is Engine.AUTO for i in range(len(tasks))}


@pytest.mark.parametrize("engine", [Engine.BATCHED, Engine.AUTO])
def test_members_on_a_device_other_than_the_cpu_train_one_by_one(engine):
    """The batched learner computes on the CPU: a run on a GPU trains each member there alone
    rather than its groups on the CPU behind the user's back."""
    tasks = [dataclasses.replace(t, device="cuda")
             for t in _tasks([NetSpec(hidden_size=8, head=(8,))] * 4)]
    plan = plan_tasks(tasks, engine, workers=2)
    assert [type(u) for u in plan.units] == [TrainTask] * 4
    assert all(u.device == "cuda" for u in plan.units)
