"""`train_group` trains every member as `train_agent` would on its own, to float tolerance."""

import copy
import dataclasses

import numpy as np
import pytest

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.agents.checkpoint import agent_to_bytes
from evopop.agents.evaluation import evaluate
from evopop.agents.train import train_agent
from evopop.envs import EnvSpec, make_env, make_vec_env
from evopop.evolution.task import GroupTask, TrainTask, run_group_task
from evopop.rollouts import VectorRollouts
from evopop.rollouts.group import GroupSource, MemberRollouts
from evopop.rollouts.group_train import train_group
from evopop.rollouts.shared import SharedRollouts

ATOL = 1e-4
NUM_ENVS, LEARN_STEP = 4, 32
UPDATES = 4
SHARED = dict(learn_step=LEARN_STEP, batch_size=64, update_epochs=2, max_seq_len=8)
# Float hyperparameters differ; the structural ones are shared (one group).
MEMBER_PARAMS = [
    dict(lr=1e-3, clip_coef=0.2, ent_coef=0.0),
    dict(lr=3e-3, clip_coef=0.1, ent_coef=0.01, anneal=True, normalize_obs=True),
    dict(lr=5e-3, clip_coef=0.3, ent_coef=0.05, gamma=0.9, normalize_rewards=True),
]
CASES = [
    ("CartPoleNoVel-v1", NetSpec(cell="lstm", hidden_size=16, head=(16,))),
    ("PendulumNoVel-v1", NetSpec(cell="gru", hidden_size=16, head=(16,))),
    ("PendulumNoVel-v1", NetSpec(cell="none", head=(16,))),
    ("PendulumNoVel-v1", NetSpec(cell="lstm", hidden_size=16, head=(16,), sde=True)),
]
SEEDS = [11, 12, 13]
SCHEDULES = [(0, 10_000), (256, 2_000), (0, 512)]


def _members(env_id: str, spec: NetSpec | list[NetSpec]
             ) -> tuple[list[Agent], list[VectorRollouts]]:
    specs = spec if isinstance(spec, list) else [spec] * len(MEMBER_PARAMS)
    sources = [VectorRollouts(make_vec_env(env_id, NUM_ENVS)) for _ in MEMBER_PARAMS]
    space = sources[0].single_observation_space, sources[0].single_action_space
    agents = [Agent(*space, s, PPOParams(**SHARED, **p), seed=i)
              for i, (s, p) in enumerate(zip(specs, MEMBER_PARAMS, strict=True))]
    return agents, sources


def _difference(a: Agent, b: Agent) -> float:
    """Largest difference of weights and Adam moments; step counts must be equal."""
    worst = 0.0
    for pa, pb in zip(a.net.parameters(), b.net.parameters(), strict=True):
        worst = max(worst, float((pa - pb).detach().abs().max()))
        sa, sb = a.optimizer.state[pa], b.optimizer.state[pb]
        assert float(sa["step"]) == float(sb["step"]) > 0
        for slot in ("exp_avg", "exp_avg_sq"):
            worst = max(worst, float((sa[slot] - sb[slot]).abs().max()))
    return worst


def _group_source(kind: str, env_id: str, sources: list[VectorRollouts]) -> GroupSource:
    """The group's own envs: one per member, or one env of every member's copies."""
    if kind == "members":
        return MemberRollouts([VectorRollouts(make_vec_env(env_id, NUM_ENVS)) for _ in sources])
    return SharedRollouts(make_vec_env(env_id, NUM_ENVS * len(sources)), len(sources))


# Members of other widths, padded into one stack (`evopop.batched.padding`).
WIDTHS = [
    ("CartPoleNoVel-v1", [NetSpec(cell="lstm", hidden_size=h, head=w, activation=a)
                          for h, w, a in ((16, (16,), "tanh"), (8, (24,), "tanh"),
                                          (24, (8,), "tanh"))]),
    ("PendulumNoVel-v1", [NetSpec(cell="gru", hidden_size=h, head=w, num_layers=2,
                                  activation="elu") for h, w in ((16, (16, 8)), (8, (8, 16)),
                                                                 (12, (16, 16)))]),
    ("PendulumNoVel-v1", [NetSpec(cell="none", head=w, activation="gelu")
                          for w in ((16,), (8,), (32,))]),
]


@pytest.mark.parametrize("env_id,specs", WIDTHS, ids=["lstm", "gru2", "none"])
def test_members_of_other_widths_train_padded_as_member_by_member(env_id, specs):
    test_group_training_equals_member_by_member(env_id, specs, "shared", True)


@pytest.mark.parametrize("kind,batched_update", [
    ("members", True), ("shared", True), ("shared", False)])
@pytest.mark.parametrize("env_id,spec", CASES,
                         ids=[f"{e.split('NoVel')[0]}-{s.cell.value}" for e, s in CASES])
def test_group_training_equals_member_by_member(env_id, spec, kind, batched_update):
    agents, sources = _members(env_id, spec)
    alone = copy.deepcopy(agents)
    steps = UPDATES * LEARN_STEP * NUM_ENVS
    group_source = _group_source(kind, env_id, sources)
    grouped = train_group(agents, group_source, steps, SEEDS, SCHEDULES, batched_update)
    group_source.close()
    for agent, ref, seed, schedule, got, source in zip(
            alone, agents, SEEDS, SCHEDULES, grouped, sources, strict=True):
        want = train_agent(agent, source, steps, seed, schedule=schedule)
        assert got.env_steps == want.env_steps == steps
        assert len(got.updates) == len(want.updates) == UPDATES
        assert got.episodes.returns == pytest.approx(want.episodes.returns, abs=1e-3)
        assert _difference(ref, agent) <= ATOL
        if ref.obs_norm is not None:
            assert np.allclose(ref.obs_norm.rms.mean, agent.obs_norm.rms.mean, atol=ATOL)
        eval_envs = make_vec_env(env_id, 2)
        scores = [evaluate(a, eval_envs, 2, seed=5).returns for a in (ref, agent)]
        assert scores[0] == pytest.approx(scores[1], abs=1e-2)
        eval_envs.close()
    for source in sources:
        source.close()


def test_a_group_shares_one_rollout_length():
    agents, sources = _members("CartPoleNoVel-v1", CASES[0][1])
    agents[1].set_params(dataclasses.replace(agents[1].params, learn_step=16))
    with pytest.raises(ValueError, match="learn_step"):
        train_group(agents, MemberRollouts(sources), 128, SEEDS)


def test_under_collection_a_member_s_fitness_does_not_depend_on_its_chunk():
    """Box actions on in-process copies: a chunk of four would be evaluated at once and a
    chunk of two one by one, which round differently; `collection` groups evaluate one by
    one (`run_group_task`), so the members' fitness, too, is the same in any chunk."""
    env = EnvSpec(id="PendulumNoVel-v1", num_envs=2, vectorization="sync")
    probe = make_env(env)
    spaces = probe.observation_space, probe.action_space
    probe.close()
    spec = NetSpec(cell="lstm", hidden_size=16, head=(16,))
    tasks = [TrainTask(agent_to_bytes(Agent(*spaces, spec, PPOParams(learn_step=16,
                                                                      batch_size=16), seed=i)),
                       env, env.with_copies(4), None, 64, i, (0, 64), 4, 0) for i in range(4)]
    four = run_group_task(GroupTask(tuple(tasks), batched_update=False))
    two = [r for half in (tasks[:2], tasks[2:])
           for r in run_group_task(GroupTask(tuple(half), batched_update=False))]
    assert [(r.agent, r.fitness) for r in four] == [(r.agent, r.fitness) for r in two]


def test_with_collection_batched_a_member_s_result_does_not_depend_on_its_chunk():
    """What lets one worker and two give the same elite under the `collection` engine
    (`evopop.evolution.plan`): a member whose collection is batched, trained in a chunk of
    four, ends bit for bit where it ends in a chunk of two. (A stacked update pads every
    member's minibatch to the chunk's largest, so its rounding follows the chunk.)"""
    env_id, spec = CASES[0]
    agents = _members(env_id, spec)[0] + _members(env_id, spec)[0][:1]  # four members
    steps = 2 * LEARN_STEP * NUM_ENVS

    def trained(chunks: list[list[int]]) -> list[list[np.ndarray]]:
        group = copy.deepcopy(agents)
        for chunk in chunks:
            shared = SharedRollouts(make_vec_env(env_id, NUM_ENVS * len(chunk)), len(chunk))
            train_group([group[i] for i in chunk], shared, steps, [20 + i for i in chunk],
                        batched_update=False)
            shared.close()
        return [[p.detach().numpy().copy() for p in a.net.parameters()] for a in group]

    whole, halves = trained([[0, 1, 2, 3]]), trained([[0, 2], [1, 3]])
    for one, other in zip(whole, halves, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(one, other, strict=True))
