"""The generation loop: train every member, evaluate, select, mutate, checkpoint; repeat.

Every random stream is derived from (seed, generation, slot, stream), so a run is a function of
its config alone: the same seed gives the same elite on any backend and after any resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from evopop.agents import Agent
from evopop.agents.checkpoint import agent_from_bytes, agent_to_bytes, save_agent
from evopop.envs.spec import EnvSpec
from evopop.evolution.backends import Backend
from evopop.evolution.mutation import mutate
from evopop.evolution.population import LoopState, Member
from evopop.evolution.selection import elite_index, tournament_select
from evopop.evolution.settings import MutationSettings
from evopop.evolution.task import TaskResult, TrainTask
from evopop.execution.cluster import RaySettings
from evopop.records import GenerationRecord, LineageRecord, MemberRecord, json_number
from evopop.rundir import RunDir
from evopop.seeding import derive_seed, torch_generator


class Stream(IntEnum):
    """Independent random streams of one generation (INIT_* only at generation 0)."""

    TRAIN = 0
    EVAL = 1
    SELECT = 2
    MUTATE = 3
    MUTATE_TORCH = 4
    INIT_HP = 5
    INIT_WEIGHTS = 6


@dataclass(frozen=True)
class LoopSettings:
    """The loop's knobs, resolved from the run config."""

    seed: int
    env: EnvSpec
    eval_env: EnvSpec
    ray: RaySettings
    evo_steps: int
    max_steps: int
    eval_loop: int
    tournament_size: int
    elitism: bool
    target: float | None
    mutation: MutationSettings


def _tasks(state: LoopState, s: LoopSettings) -> list[TrainTask]:
    g = state.generation
    eval_seed = derive_seed(s.seed, g, 0, Stream.EVAL)  # common to all members: a fair contest
    return [
        TrainTask(agent_to_bytes(m.agent), s.env, s.eval_env, s.ray, s.evo_steps,
                  derive_seed(s.seed, g, slot, Stream.TRAIN), (m.env_steps, s.max_steps),
                  s.eval_loop, eval_seed)
        for slot, m in enumerate(state.members)
    ]


def _absorb(state: LoopState, results: list[TaskResult]) -> None:
    for member, result in zip(state.members, results, strict=True):
        member.agent = agent_from_bytes(result.agent)
        member.fitness.append(result.fitness)
        member.env_steps += result.env_steps
        state.total_env_steps += result.env_steps


def _next_generation(state: LoopState, s: LoopSettings) -> list[LineageRecord]:
    """Selection, cloning and mutation; the elite (slot 0 with elitism) passes unchanged.
    Returns the lineage records of the children."""
    g = state.generation
    fitness = [m.fitness[-1] for m in state.members]
    select_rng = np.random.default_rng(derive_seed(s.seed, g, 0, Stream.SELECT))
    parents = tournament_select(fitness, s.tournament_size, s.elitism, select_rng)
    nxt: list[Member] = []
    born: list[LineageRecord] = []
    for slot, parent in enumerate(parents):
        if s.elitism and slot == 0:
            nxt.append(state.members[parent])
            continue
        child = state.members[parent].clone(state.next_id, g + 1)
        state.next_id += 1
        mutate_rng = np.random.default_rng(derive_seed(s.seed, g, slot, Stream.MUTATE))
        torch_gen = torch_generator(derive_seed(s.seed, g, slot, Stream.MUTATE_TORCH))
        child.mutation = mutate(child.agent, s.mutation, mutate_rng, torch_gen).to_dict()
        born.append(lineage_record(child, g + 1))
        nxt.append(child)
    state.members = nxt
    return born


def lineage_record(member: Member, generation: int) -> LineageRecord:
    return LineageRecord(generation, member.id, member.parent_id, member.born, member.mutation)


def _member_record(member: Member, result: TaskResult) -> MemberRecord:
    metrics = bool(result.train_metrics or result.eval_metrics)  # only envs that report them
    return MemberRecord(
        id=member.id, parent_id=member.parent_id, fitness=result.fitness,
        eval_returns=result.eval_returns, train_return=result.train_return,
        finite=result.finite, env_steps=member.env_steps,
        hparams=member.agent.params.to_dict(), spec=member.agent.spec.to_dict(),
        mutation=member.mutation,
        train_metrics=result.train_metrics if metrics else None,
        eval_metrics=result.eval_metrics if metrics else None)


def _generation_record(
    state: LoopState, results: list[TaskResult], elite: int, wall: float
) -> GenerationRecord:
    """One metrics.jsonl line; `elite_metrics` are the elite's evaluation-episode metrics."""
    steps = sum(r.env_steps for r in results)
    return GenerationRecord(
        generation=state.generation,
        total_env_steps=state.total_env_steps,
        wall_s=round(state.wall_s, 3),
        steps_per_s=round(steps / wall, 1) if wall > 0 else None,
        best_fitness=state.best_fitness,
        elite_fitness=state.elite_history[-1],
        members=tuple(_member_record(m, r) for m, r in zip(state.members, results, strict=True)),
        elite_metrics=results[elite].eval_metrics or None)


def _save_elite(run_dir: RunDir, elite: Member, generation: int, env: EnvSpec) -> None:
    save_agent(elite.agent, run_dir.elite, extra={
        "env_id": env.id, "env": env.model_dump(mode="json"), "member_id": elite.id,
        "generation": generation,
        "fitness": json_number(elite.fitness[-1])})


def run_generations(
    state: LoopState,
    s: LoopSettings,
    backend: Backend,
    run_dir: RunDir,
    checkpoint: Callable[[LoopState], None],
    on_generation: Callable[[LoopState, GenerationRecord], None] | None = None,
) -> LoopState:
    """Runs generations until the target fitness or `max_steps` per member is reached."""
    while not state.finished:
        start = time.perf_counter()
        results = backend.map(_tasks(state, s))
        _absorb(state, results)
        elite_slot = _score(state, s)
        _save_elite(run_dir, state.members[elite_slot], state.generation, s.env)
        wall = time.perf_counter() - start
        state.wall_s += wall
        record = _generation_record(state, results, elite_slot, wall)
        run_dir.append_generation(record)
        if on_generation is not None:
            on_generation(state, record)
        if not state.finished:
            run_dir.append_lineage(_next_generation(state, s))
            state.generation += 1
        checkpoint(state)
    return state


def _score(state: LoopState, s: LoopSettings) -> int:
    """Picks this generation's elite and updates the counters that decide whether to stop."""
    elite_slot = elite_index([m.fitness[-1] for m in state.members])
    fitness = state.members[elite_slot].fitness[-1]
    state.elite_history.append(fitness)
    state.best_fitness = max(state.best_fitness, fitness)
    state.target_reached = s.target is not None and fitness >= s.target
    done_steps = all(m.env_steps >= s.max_steps for m in state.members)
    state.finished = state.target_reached or done_steps
    return elite_slot


def initial_members(agents: list[Agent]) -> list[Member]:
    return [Member(i, None, 0, agent) for i, agent in enumerate(agents)]
