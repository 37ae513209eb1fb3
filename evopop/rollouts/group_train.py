"""`train_group`: `train_agent` for a group of members, as one batched computation.

Each member gets the seeds `train_agent` would derive from its own seed, its own env copies
(`GroupSource`: one env per member, or one env for the group) and its own annealing
schedule; collection runs one batched policy step per env step and each update is one
`batched_ppo_update`, so every member ends where `train_agent` would have taken it, up to
float rounding. Members must stack (`evopop.batched.group_members`) and share a rollout
length; members of other widths (`evopop.batched.padding`) only with `batched_update` on one
shared env (`SharedRollouts`), where their states live at the stack's widths.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.ppo import UpdateStats, ppo_update
from evopop.agents.train import TrainResult, train_seeds
from evopop.batched import StackedPopulation, batched_ppo_update, stack, unstack
from evopop.rollouts.group import GroupSource


@dataclass
class _Member:
    """What one member carries through the group's training."""

    agent: Agent
    shuffler: np.random.Generator
    schedule: tuple[int, int]
    result: TrainResult

    def remaining(self) -> float:
        done_before, total = self.schedule
        return max(0.0, 1.0 - (done_before + self.result.env_steps) / total)


def train_group(
    agents: Sequence[Agent], source: GroupSource, total_steps: int,
    seeds: Sequence[int], schedules: Sequence[tuple[int, int]] | None = None,
    batched_update: bool = True,
) -> list[TrainResult]:
    """Trains every member until at least `total_steps` env steps (whole rollouts); a member
    whose update went non-finite stops there, as `train_agent` stops, and the others go on.

    Without `batched_update` only collection is batched and each member runs its own
    `ppo_update` (exactly `train_agent`'s): for small groups, whose stacked update costs more
    than the members' own (`evopop.evolution.engine`)."""
    steps = {a.params.learn_step for a in agents}
    if len(steps) != 1:
        raise ValueError(f"a group shares one rollout length; got learn_step {sorted(steps)}")
    learn_step = steps.pop()
    if len({a.spec for a in agents}) > 1 and not batched_update:
        raise ValueError("members of other widths train as a group only with batched_update")
    plans = schedules or [(0, total_steps)] * len(agents)
    derived = [train_seeds(seed) for seed in seeds]
    source.start([(env_seed, sample_seed) for env_seed, sample_seed, _ in derived])
    members = [_Member(a, shuffler, plan, TrainResult())
               for a, (_, _, shuffler), plan in zip(agents, derived, plans, strict=True)]
    start = time.perf_counter()
    while any(live := [m.result.env_steps < total_steps and m.result.finite for m in members]):
        rows = [p for p, alive in enumerate(live) if alive]
        pop = stack(list(agents))  # from the agents, which hold the last update (unstack below)
        bufs = source.collect(pop, agents, live, learn_step)
        group = [members[p] for p in rows]
        stats = _update(pop, len(rows) == len(agents), group, bufs, batched_update)
        for p, buf, update in zip(rows, bufs, stats, strict=True):
            result = members[p].result
            result.env_steps += buf.steps * buf.num_envs
            result.episodes.extend(source.pop_episodes(p))
            result.updates.append(update)
    wall = time.perf_counter() - start
    for m in members:
        m.result.wall_s = wall
    return [m.result for m in members]


def _update(pop: StackedPopulation, whole: bool, group: list[_Member],
            bufs: list[RolloutBuffer], batched: bool) -> list[UpdateStats]:
    """One PPO update of every member in `group`: stacked (`pop`, if it holds exactly these
    members (`whole`), else they are stacked anew at its widths) or one by one."""
    agents = [m.agent for m in group]
    if not batched:
        return [ppo_update(m.agent, buf, m.shuffler, m.remaining())
                for m, buf in zip(group, bufs, strict=True)]
    pop = pop if whole else stack(agents, like=pop)
    stats = batched_ppo_update(pop, agents, bufs, [m.shuffler for m in group],
                               [m.remaining() for m in group])
    unstack(pop, agents)
    return stats
