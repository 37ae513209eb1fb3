"""The generation loop: train every member, evaluate, select, mutate, checkpoint; repeat.

Every random stream is derived from (seed, generation, slot, stream), so a run is a function of
its config alone: the same seed gives the same elite on any backend and after any resume.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import IO, Any

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
from evopop.rundir import ELITE_FILE, LINEAGE_FILE, METRICS_FILE
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


def json_number(value: float) -> float | None:
    """Non-finite fitness (a diverged member) is written as null: strict JSON readers reject
    -Infinity."""
    return value if math.isfinite(value) else None


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


def _next_generation(state: LoopState, s: LoopSettings, lineage: IO[str]) -> None:
    """Selection, cloning and mutation; the elite (slot 0 with elitism) passes unchanged."""
    g = state.generation
    fitness = [m.fitness[-1] for m in state.members]
    select_rng = np.random.default_rng(derive_seed(s.seed, g, 0, Stream.SELECT))
    parents = tournament_select(fitness, s.tournament_size, s.elitism, select_rng)
    nxt: list[Member] = []
    for slot, parent in enumerate(parents):
        if s.elitism and slot == 0:
            nxt.append(state.members[parent])
            continue
        child = state.members[parent].clone(state.next_id, g + 1)
        state.next_id += 1
        mutate_rng = np.random.default_rng(derive_seed(s.seed, g, slot, Stream.MUTATE))
        torch_gen = torch_generator(derive_seed(s.seed, g, slot, Stream.MUTATE_TORCH))
        child.mutation = mutate(child.agent, s.mutation, mutate_rng, torch_gen).to_dict()
        lineage.write(json.dumps(lineage_line(child, g + 1)) + "\n")
        nxt.append(child)
    lineage.flush()
    state.members = nxt


def lineage_line(member: Member, generation: int) -> dict[str, Any]:
    return {"generation": generation, "id": member.id, "parent_id": member.parent_id,
            "born": member.born, "mutation": member.mutation}


def _member_record(member: Member, result: TaskResult) -> dict[str, Any]:
    record = {
        "id": member.id, "parent_id": member.parent_id, "fitness": json_number(result.fitness),
        "eval_returns": list(result.eval_returns), "train_return": result.train_return,
        "finite": result.finite, "env_steps": member.env_steps,
        "hparams": member.agent.params.to_dict(), "spec": member.agent.spec.to_dict(),
        "mutation": member.mutation,
    }
    if result.train_metrics or result.eval_metrics:  # only envs that report episode metrics
        record["train_metrics"] = result.train_metrics
        record["eval_metrics"] = result.eval_metrics
    return record


def _generation_record(
    state: LoopState, results: list[TaskResult], elite: int, wall: float
) -> dict[str, Any]:
    """One metrics.jsonl line; `elite_metrics` are the elite's evaluation-episode metrics."""
    steps = sum(r.env_steps for r in results)
    members = [_member_record(m, r) for m, r in zip(state.members, results, strict=True)]
    record = {
        "generation": state.generation,
        "total_env_steps": state.total_env_steps,
        "wall_s": round(state.wall_s, 3),
        "steps_per_s": round(steps / wall, 1) if wall > 0 else None,
        "best_fitness": json_number(state.best_fitness),
        "elite_fitness": json_number(state.elite_history[-1]),
        "members": members,
    }
    if results[elite].eval_metrics:
        record["elite_metrics"] = results[elite].eval_metrics
    return record


def _save_elite(run_dir: Path, elite: Member, generation: int, env: EnvSpec) -> None:
    save_agent(elite.agent, run_dir / ELITE_FILE, extra={
        "env_id": env.id, "env": env.model_dump(mode="json"), "member_id": elite.id,
        "generation": generation,
        "fitness": json_number(elite.fitness[-1])})


def run_generations(
    state: LoopState,
    s: LoopSettings,
    backend: Backend,
    run_dir: Path,
    checkpoint: Callable[[LoopState], None],
    on_generation: Callable[[LoopState, dict[str, Any]], None] | None = None,
) -> LoopState:
    """Runs generations until the target fitness or `max_steps` per member is reached."""
    with (run_dir / METRICS_FILE).open("a") as metrics, \
            (run_dir / LINEAGE_FILE).open("a") as lineage:
        while not state.finished:
            start = time.perf_counter()
            results = backend.map(_tasks(state, s))
            _absorb(state, results)
            fitness = [m.fitness[-1] for m in state.members]
            elite_slot = elite_index(fitness)
            elite = state.members[elite_slot]
            state.elite_history.append(elite.fitness[-1])
            state.best_fitness = max(state.best_fitness, elite.fitness[-1])
            state.target_reached = s.target is not None and elite.fitness[-1] >= s.target
            done_steps = all(m.env_steps >= s.max_steps for m in state.members)
            state.finished = state.target_reached or done_steps
            _save_elite(run_dir, elite, state.generation, s.env)
            wall = time.perf_counter() - start
            state.wall_s += wall
            record = _generation_record(state, results, elite_slot, wall)
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
            if on_generation is not None:
                on_generation(state, record)
            if not state.finished:
                _next_generation(state, s, lineage)
                state.generation += 1
            checkpoint(state)
    return state


def initial_members(agents: list[Agent]) -> list[Member]:
    return [Member(i, None, 0, agent) for i, agent in enumerate(agents)]
