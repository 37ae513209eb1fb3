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
from evopop.agents.evaluation import evaluate
from evopop.agents.train import TrainResult, train_agent
from evopop.envs.make import make_vec_env
from evopop.envs.metrics import mean_metrics
from evopop.envs.spec import EnvSpec
from evopop.rollouts import Rollouts, VectorRollouts, make_rollout_envs
from evopop.rollouts.group_train import train_group
from evopop.rollouts.make import lockstep_rollouts

_ENV_CACHE: dict[str, Rollouts | VectorEnv] = {}


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


@dataclass(frozen=True)
class GroupTask:
    """Members that stack (`evopop.batched.group_members`), trained as one batched
    computation; each keeps its own task's seeds, schedule and evaluation."""

    members: tuple[TrainTask, ...]


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


_Cached = TypeVar("_Cached", Rollouts, VectorRollouts, VectorEnv)


def _cached(key: str, build: Callable[[], _Cached]) -> _Cached:
    """Envs (and env workers) are built only when the spec changes; every task resets them
    with its own seed."""
    if key not in _ENV_CACHE or _ENV_CACHE[key].closed:  # closed: e.g. after a failed rollout
        _ENV_CACHE[key] = build()
    return _ENV_CACHE[key]  # type: ignore[return-value]


def cached_rollouts(spec: EnvSpec, ray: Any = None) -> Rollouts:
    return _cached(f"train|{spec.key()}|{ray!r}", lambda: make_rollout_envs(spec, ray))


def cached_group_rollouts(spec: EnvSpec, slot: int) -> VectorRollouts:
    """In-process vector envs for the `slot`-th member of a group: every member its own."""
    return _cached(f"group|{spec.key()}|{slot}", lambda: lockstep_rollouts(spec))


def cached_eval_envs(spec: EnvSpec) -> VectorEnv:
    return _cached(f"eval|{spec.key()}", lambda: make_vec_env(spec))


def close_cached_envs() -> None:
    """Close every cached env (and its worker processes) when a backend shuts down."""
    while _ENV_CACHE:
        _, envs = _ENV_CACHE.popitem()
        envs.close()


def _weights_finite(agent_net: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in agent_net.parameters())


def run_task(task: TrainTask) -> TaskResult:
    """Train for `task.steps` env steps, then evaluate deterministically; fitness = mean return.

    A member whose loss or weights became non-finite gets fitness -inf and is not evaluated.
    """
    agent = agent_from_bytes(task.agent, device=task.device)
    source = cached_rollouts(task.env, task.ray)
    before = source.timed_out
    result = train_agent(agent, source, task.steps, task.seed, schedule=task.schedule)
    return dataclasses.replace(_evaluated(agent, task, result),
                               env_timeouts=source.timed_out - before)


def run_group_task(group: GroupTask) -> list[TaskResult]:
    """`run_task` for every member of the group, the training batched (`train_group`)."""
    tasks = group.members
    agents = [agent_from_bytes(t.agent) for t in tasks]
    sources = [cached_group_rollouts(t.env, slot) for slot, t in enumerate(tasks)]
    results = train_group(agents, sources, tasks[0].steps, [t.seed for t in tasks],
                          [t.schedule for t in tasks])
    return [_evaluated(a, t, r) for a, t, r in zip(agents, tasks, results, strict=True)]


def _evaluated(agent: Agent, task: TrainTask, result: TrainResult) -> TaskResult:
    """The member's result after training: evaluated unless it went non-finite."""
    finite = result.finite and _weights_finite(agent.net)
    returns: tuple[float, ...] = ()
    fitness = -math.inf
    eval_metrics: dict[str, float | None] = {}
    if finite:
        scores = evaluate(agent, cached_eval_envs(task.eval_env.lockstep()), task.eval_episodes,
                          task.eval_seed)
        returns, fitness = tuple(scores.returns.tolist()), scores.mean
        eval_metrics = mean_metrics(scores.metrics)
    recent = result.episodes.returns[-20:]
    return TaskResult(
        agent=agent_to_bytes(agent),
        fitness=fitness,
        eval_returns=returns,
        env_steps=result.env_steps,
        train_return=sum(recent) / len(recent) if recent else None,
        finite=finite,
        wall_s=result.wall_s,
        train_metrics=mean_metrics(result.episodes.metrics),
        eval_metrics=eval_metrics,
    )
