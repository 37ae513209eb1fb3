"""The generation loop: train every member, evaluate, select, mutate, checkpoint; repeat.

`Population` is the loop's state and its steps, usable from a script (see
`scripts/train_pendulum_novel.py`); `run_generations` drives it with records and checkpoints.
Every random stream is derived from (seed, generation, slot, stream), so a run is a function of
its config alone: the same seed gives the same elite on any backend and after any resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum
from types import TracebackType

import numpy as np

from evopop.agents.agent import Agent
from evopop.agents.checkpoint import save_agent_bytes
from evopop.agents.device import resolve_device
from evopop.agents.evaluation import eval_env_spec
from evopop.agents.spaces import ActionSpec, ObsEncoder
from evopop.envs.make import make_env
from evopop.evolution.backends import Backend, make_backend
from evopop.evolution.footprint import check_fits
from evopop.evolution.mutation import MutationEvent, mutate
from evopop.evolution.pbt import multi_frequency_plan, truncation_plan
from evopop.evolution.population import LoopState, Member
from evopop.evolution.selection import Migration, Op, Plan, elite_index, tournament_plan
from evopop.evolution.selection_settings import (
    SelectionSettings,
    TournamentSelection,
    TruncationSelection,
)
from evopop.evolution.settings import RunConfig
from evopop.evolution.task import TaskResult, TrainTask
from evopop.execution.placement import Placement
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
    FRESH = 7  # once per run (no generation, no slot): the final elite's fresh episodes


def initial_state(config: RunConfig) -> LoopState:
    """Generation 0: `population_size` agents from the config's spec and hyperparameters."""
    evo = config.population()
    env = make_env(config.env)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    check_fits(config, ObsEncoder(obs_space).dim, ActionSpec.from_space(act_space))
    hp_rng = np.random.default_rng(derive_seed(config.seed, 0, 0, Stream.INIT_HP))
    agents = []
    for slot in range(evo.population_size):
        params = (evo.mutation.hp_space.sample_params(config.ppo, hp_rng)
                  if evo.random_init_hp else config.ppo)
        seed = derive_seed(config.seed, 0, slot, Stream.INIT_WEIGHTS)
        agents.append(Agent(obs_space, act_space, config.net, params, seed=seed))
    members = [Member(i, None, 0, agent) for i, agent in enumerate(agents)]
    return LoopState(generation=0, next_id=len(agents), members=members)


class Population:
    """A population of recurrent PPO members driven one generation at a time:
    `train()` (every member learns `evo_steps` env steps and is evaluated), then `select()`
    and `mutate()` make the next generation. Members train on `backend` (default: one after
    another in this process) and on `config.device`, resolved here once; between tasks they
    live on the CPU, where selection and mutation run."""

    def __init__(self, config: RunConfig, backend: Backend | None = None,
                 state: LoopState | None = None) -> None:
        self.config = config
        self.evolution = config.population()
        self.state = state if state is not None else initial_state(config)
        self.backend = backend or make_backend(Placement.LOCAL, 1, engine=config.engine)
        # a resumed run plans as it began; a fresh one for its backend's workers, at most one
        # per member (which plans the same as more: a Ray pool may fit more than a checkpoint
        # keeps, MAX_POPULATION)
        self.state.batch_width = self.state.batch_width or \
            min(self.backend.width, len(self.state.members))
        self.backend.width = self.state.batch_width
        self.device = resolve_device(config.device)
        self.last_results: list[TaskResult] = []
        self._children: list[int] = []  # slots of this generation's clones, still unmutated

    def __enter__(self) -> Population:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.backend.close(abort=error is not None)

    @property
    def members(self) -> list[Member]:
        return self.state.members

    @property
    def generation(self) -> int:
        return self.state.generation

    @property
    def elite(self) -> Member:
        """The member with the best fitness of the last evaluation."""
        return self.members[elite_index([m.fitness[-1] for m in self.members])]

    def train(self) -> list[float]:
        """One learning cycle for every member; returns their fitnesses (`config.fitness`:
        mean return over `eval_episodes` deterministic episodes, the same episodes for every
        member, or over its recent training episodes)."""
        self.last_results = self.backend.map(self._tasks())
        for member, result in zip(self.members, self.last_results, strict=True):
            member.source = result.agent
            member.fitness.append(result.fitness)
            member.env_steps += result.env_steps
            self.state.total_env_steps += result.env_steps
        return [m.fitness[-1] for m in self.members]

    def _tasks(self) -> list[TrainTask]:
        config, g = self.config, self.generation
        eval_env = eval_env_spec(config.env, config.eval_episodes)
        return [
            TrainTask(m.agent_bytes, config.env, eval_env, config.ray,
                      self.evolution.evo_steps, derive_seed(config.seed, g, slot, Stream.TRAIN),
                      (m.env_steps, config.max_steps), config.eval_episodes,
                      eval_seed(config, g), device=str(self.device), fitness=config.fitness)
            for slot, m in enumerate(self.members)
        ]

    def select(self) -> list[int]:
        """Makes the next generation by `evolution.selection`: kept members pass on unchanged,
        the others are copies (new ids) of the members the strategy chose; `mutate` then
        mutates the clones (not the migrants). Returns each slot's source slot."""
        g, old = self.generation, self.members
        rng = np.random.default_rng(derive_seed(self.config.seed, g, 0, Stream.SELECT))
        plan = plan_selection(self.evolution.selection, [m.fitness[-1] for m in old], g, rng)
        nxt, self._children = [], []
        for slot, step in enumerate(plan):
            if step.op is Op.KEEP:
                nxt.append(old[step.source])
                continue
            child = old[step.source].clone(self.state.next_id, g + 1)
            self.state.next_id += 1
            if step.migration is None:
                self._children.append(slot)
            else:
                _migrate(child, step.migration, old)
            nxt.append(child)
        self.state.members = nxt
        return [step.source for step in plan]

    def mutate(self) -> list[MutationEvent]:
        """One mutation for each clone `select` made; then the next generation begins."""
        g, seed = self.generation, self.config.seed
        events = []
        for slot in self._children:
            child = self.members[slot]
            rng = np.random.default_rng(derive_seed(seed, g, slot, Stream.MUTATE))
            torch_gen = torch_generator(derive_seed(seed, g, slot, Stream.MUTATE_TORCH))
            event = mutate(child.agent, self.evolution.mutation, rng, torch_gen)
            child.mutation = event.to_dict()
            events.append(event)
        self.state.generation += 1
        return events

    def newborn(self) -> list[LineageRecord]:
        """Lineage records of the members born into the current generation."""
        return [lineage_record(m, self.generation) for m in self.members
                if m.born == self.generation]


def plan_selection(selection: SelectionSettings, fitnesses: list[float], generation: int,
                   rng: np.random.Generator) -> Plan:
    """The strategy's plan for the next generation (a function of its arguments alone)."""
    if isinstance(selection, TournamentSelection):
        return tournament_plan(fitnesses, selection, rng)
    if isinstance(selection, TruncationSelection):
        return truncation_plan(fitnesses, selection, rng)
    return multi_frequency_plan(fitnesses, selection, generation, rng)


def _migrate(child: Member, migration: Migration, old: list[Member]) -> None:
    """A migrant keeps its learned state; from a faster sub-population it takes the
    hyperparameters of the receiving sub-population's best (Adam's moments stay)."""
    if migration.params_from is not None:
        child.agent.set_params(old[migration.params_from].spec_and_params()[1])
    child.mutation = migration.record()


def eval_seed(config: RunConfig, generation: int) -> int:
    """The first seed of a generation's evaluation episodes, common to all members: a fair
    contest (episode j is seeded `eval_seed + j`)."""
    return derive_seed(config.seed, generation, 0, Stream.EVAL)


def lineage_record(member: Member, generation: int) -> LineageRecord:
    return LineageRecord(generation, member.id, member.parent_id, member.born, member.mutation)


def _member_record(member: Member, result: TaskResult) -> MemberRecord:
    metrics = bool(result.train_metrics or result.eval_metrics)  # only envs that report them
    spec, params = member.spec_and_params()
    return MemberRecord(
        id=member.id, parent_id=member.parent_id, fitness=result.fitness,
        eval_returns=result.eval_returns, train_return=result.train_return,
        finite=result.finite, env_steps=member.env_steps,
        hparams=params.to_dict(), spec=spec.to_dict(),
        mutation=member.mutation,
        train_metrics=result.train_metrics if metrics else None,
        eval_metrics=result.eval_metrics if metrics else None, env_timeouts=result.env_timeouts)


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


def _save_elite(run_dir: RunDir, population: Population, slot: int) -> None:
    elite, env = population.members[slot], population.config.env
    save_agent_bytes(elite.agent_bytes, run_dir.elite, extra={
        "env_id": env.id, "env": env.model_dump(mode="json"), "member_id": elite.id,
        "generation": population.generation, "fitness": json_number(elite.fitness[-1])})


def run_generations(
    population: Population,
    run_dir: RunDir,
    checkpoint: Callable[[LoopState], None],
    on_generation: Callable[[LoopState, GenerationRecord], None] | None = None,
) -> LoopState:
    """Runs generations until the target fitness or `max_steps` per member is reached."""
    state = population.state
    while not state.finished:
        start = time.perf_counter()
        population.train()
        results = population.last_results
        elite_slot = _score(population)
        _save_elite(run_dir, population, elite_slot)
        wall = time.perf_counter() - start
        state.wall_s += wall
        record = _generation_record(state, results, elite_slot, wall)
        run_dir.append_generation(record)
        if on_generation is not None:
            on_generation(state, record)
        if not state.finished:
            population.select()
            population.mutate()
            run_dir.append_lineage(population.newborn())
        checkpoint(state)
    return state


def _score(population: Population) -> int:
    """Picks this generation's elite and updates the counters that decide whether to stop."""
    state, target = population.state, population.evolution.target
    elite_slot = elite_index([m.fitness[-1] for m in state.members])
    fitness = state.members[elite_slot].fitness[-1]
    state.elite_history.append(fitness)
    state.best_fitness = max(state.best_fitness, fitness)
    state.target_reached = target is not None and fitness >= target
    done_steps = all(m.env_steps >= population.config.max_steps for m in state.members)
    state.finished = state.target_reached or done_steps
    return elite_slot
