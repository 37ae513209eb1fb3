"""One member's learning cycle as a pure function of plain data: `run_task(task) -> TaskResult`.

The agent travels as safetensors bytes and every random stream derives from the task's seeds, so
the same task gives bit-identical results in this process, in a worker process or on a Ray node.
That is what makes parallel members, cloning and resume exact.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from gymnasium.vector import VectorEnv

from evopop.agents.agent import Agent
from evopop.agents.checkpoint import agent_from_bytes, agent_to_bytes
from evopop.agents.evaluation import EvalResult, evaluate
from evopop.agents.train import TrainResult, train_agent
from evopop.envs.make import make_vec_env
from evopop.envs.metrics import mean_metrics
from evopop.envs.spec import EnvSpec, Vectorization
from evopop.evolution.fitness import FitnessMode, train_fitness
from evopop.rollouts import Rollouts, VectorRollouts, make_rollout_envs
from evopop.rollouts.group import GroupSource, MemberRollouts
from evopop.rollouts.group_eval import at_once_pays, evaluate_group, evaluate_group_shared
from evopop.rollouts.group_train import train_group
from evopop.rollouts.make import lockstep_rollouts
from evopop.rollouts.shared import SharedRollouts

_ENV_CACHE: dict[str, Rollouts | VectorRollouts | SharedRollouts | VectorEnv] = {}

SHARED_VECTORIZATIONS = (Vectorization.FAST, Vectorization.SYNC)
"""Where a group's members step one env of all their copies (`SharedRollouts`): the
in-process lockstep modes. async copies are processes, one env per member keeps them few."""


@dataclass(frozen=True)
class TrainTask:
    agent: bytes
    env: EnvSpec
    eval_env: EnvSpec
    ray: Any  # the run's RaySettings, for env workers on Ray
    steps: int
    seed: int
    schedule: tuple[int, int]  # (env steps done before, total) for lr/clip annealing
    eval_episodes: int
    eval_seed: int
    device: str = "cpu"  # resolved at run start (never "auto"): where the worker builds the agent
    fitness: FitnessMode = FitnessMode.EVAL


@dataclass(frozen=True)
class GroupTask:
    """Members that stack (`evopop.batched.group_members`), trained as one batched
    computation (collection only, each member its own update, without `batched_update`);
    each keeps its own task's seeds, schedule and evaluation."""

    members: tuple[TrainTask, ...]
    batched_update: bool = True


@dataclass(frozen=True)
class TaskResult:
    agent: bytes
    fitness: float
    eval_returns: tuple[float, ...]
    env_steps: int
    train_return: float | None
    finite: bool
    wall_s: float
    train_metrics: dict[str, float | None]  # means of env-reported episode metrics
    eval_metrics: dict[str, float | None]
    env_timeouts: int = 0  # env workers replaced for exceeding env.step_timeout_s


_Cached = TypeVar("_Cached", Rollouts, VectorRollouts, SharedRollouts, VectorEnv)


def _cached(key: str, build: Callable[[], _Cached]) -> _Cached:
    """Envs (and env workers) are built only when the spec changes; every task resets them
    with its own seed."""
    if key not in _ENV_CACHE or _ENV_CACHE[key].closed:  # closed: e.g. after a failed rollout
        _ENV_CACHE[key] = build()
    return _ENV_CACHE[key]  # type: ignore[return-value]


def cached_rollouts(spec: EnvSpec, ray: Any = None) -> Rollouts:
    return _cached(f"train|{spec.key()}|{ray!r}", lambda: make_rollout_envs(spec, ray))


def cached_group_source(spec: EnvSpec, size: int) -> GroupSource:
    """A group of `size` members' envs: one env of all their copies where the spec steps in
    this process (`SHARED_VECTORIZATIONS`), else in-process vector envs per member."""
    if spec.vectorization in SHARED_VECTORIZATIONS:
        return _cached(f"shared|{spec.key()}|{size}",
                       lambda: SharedRollouts(make_vec_env(spec, spec.num_envs * size), size))
    return MemberRollouts([_cached(f"group|{spec.key()}|{slot}", lambda: lockstep_rollouts(spec))
                           for slot in range(size)])


def cached_eval_envs(spec: EnvSpec, slot: int = 0) -> VectorEnv:
    """Lockstep evaluation envs (`eval_env_spec`); a group's members each their own `slot`."""
    return _cached(f"eval|{spec.key()}|{slot}", lambda: make_vec_env(spec))


def close_cached_envs() -> None:
    """Close every cached env (and its worker processes) when a backend shuts down."""
    while _ENV_CACHE:
        _, envs = _ENV_CACHE.popitem()
        envs.close()


def _weights_finite(agent_net: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in agent_net.parameters())


def run_task(task: TrainTask) -> TaskResult:
    """Train for `task.steps` env steps, then score: the mean return of deterministic
    evaluation episodes, or of recent training episodes (`evopop.evolution.fitness`).

    A member whose loss or weights became non-finite gets fitness -inf and is not evaluated.
    A task of 0 steps (the final elite's fresh episodes) builds no training envs at all.
    """
    agent = agent_from_bytes(task.agent, device=task.device)
    if task.steps == 0:
        nothing = TrainResult()
        return _scored(agent, task, nothing, _evaluated(agent, task, nothing))
    source = cached_rollouts(task.env, task.ray)
    before = source.timed_out
    result = train_agent(agent, source, task.steps, task.seed, schedule=task.schedule)
    return dataclasses.replace(_scored(agent, task, result, _evaluated(agent, task, result)),
                               env_timeouts=source.timed_out - before)


def _evaluated(agent: Agent, task: TrainTask, result: TrainResult) -> EvalResult | None:
    """The member's evaluation episodes, where its fitness needs them."""
    if not _needs_evaluation(agent, task, result):
        return None
    return evaluate(agent, cached_eval_envs(task.eval_env), task.eval_episodes, task.eval_seed)


def run_group_task(group: GroupTask) -> list[TaskResult]:
    """`run_task` for every member of the group, the training batched (`train_group`) and the
    members to evaluate evaluated at once (`_evaluated_at_once`; they share the generation's
    evaluation episodes) where that measured faster (`at_once_pays`) and the update is stacked
    too; the members' env step timeouts summed as `run_task` reports them."""
    tasks = group.members
    agents = [agent_from_bytes(t.agent) for t in tasks]
    source = cached_group_source(tasks[0].env, len(tasks))
    results = train_group(agents, source, tasks[0].steps, [t.seed for t in tasks],
                          [t.schedule for t in tasks], group.batched_update)
    todo = [i for i, (a, t, r) in enumerate(zip(agents, tasks, results, strict=True))
            if _needs_evaluation(a, t, r)]
    scores: dict[int, EvalResult] = {}
    spec = tasks[0].eval_env
    shared = spec.vectorization is Vectorization.FAST  # one envpool batch for the group
    # a collection-only group keeps per-member arithmetic, so its fitness does not depend on
    # its chunk (at once or one by one round differently, and at once follows the chunk size)
    if group.batched_update and at_once_pays(len(todo), spec.num_envs, shared=shared):
        scores = dict(zip(todo, _evaluated_at_once([agents[i] for i in todo], tasks[0], shared),
                          strict=True))
    else:
        scores = {i: evaluate(agents[i], cached_eval_envs(tasks[i].eval_env),
                              tasks[i].eval_episodes, tasks[i].eval_seed) for i in todo}
    return [_scored(a, t, r, scores.get(i))
            for i, (a, t, r) in enumerate(zip(agents, tasks, results, strict=True))]


def _evaluated_at_once(agents: list[Agent], task: TrainTask, shared: bool) -> list[EvalResult]:
    """The members evaluated as one stack on `task`'s evaluation (the generation's, common to
    all): on one env of all their copies (`shared`), else each on its own env."""
    spec, episodes, seed = task.eval_env, task.eval_episodes, task.eval_seed
    if shared:
        shared = cached_eval_envs(spec.with_copies(spec.num_envs * len(agents)))
        return evaluate_group_shared(agents, shared, episodes, seed)
    envs = [cached_eval_envs(spec, slot) for slot in range(len(agents))]
    return evaluate_group(agents, envs, episodes, seed)


def _finite(agent: Agent, result: TrainResult) -> bool:
    return result.finite and _weights_finite(agent.net)


def _needs_evaluation(agent: Agent, task: TrainTask, result: TrainResult) -> bool:
    """A finite member is evaluated, unless its fitness is `train` and training episodes
    ended this generation."""
    if not _finite(agent, result):
        return False
    return task.fitness is FitnessMode.EVAL or train_fitness(result.episodes.returns) is None


def _scored(agent: Agent, task: TrainTask, result: TrainResult,
            scores: EvalResult | None) -> TaskResult:
    """The member's result after training: its evaluation's mean return if it was evaluated,
    else its `train` fitness, or -inf if it went non-finite."""
    finite = _finite(agent, result)
    train_return = train_fitness(result.episodes.returns)
    fitness = -math.inf
    if scores is not None:
        fitness = scores.mean
    elif finite and train_return is not None:
        fitness = train_return
    return TaskResult(
        agent=agent_to_bytes(agent),
        fitness=fitness,
        eval_returns=() if scores is None else tuple(scores.returns.tolist()),
        env_steps=result.env_steps,
        train_return=train_return,
        finite=finite,
        wall_s=result.wall_s,
        train_metrics=mean_metrics(result.episodes.metrics),
        eval_metrics={} if scores is None else mean_metrics(scores.metrics),
    )
