"""Planning a generation's tasks for an engine: batched groups, or one task per member.

`plan_tasks` groups the members that can stack (`evopop.batched.group_members`), splits the
groups into chunks so every worker of the pool has work, and keeps a chunk batched when the
engine says so. A member's result depends on the chunk it trained in only at float rounding,
but that is enough to change a hash: with a batched engine the same seed gives the same
result for the same number of workers (`parallel_members`), on any placement and after resume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from evopop.agents.checkpoint import agent_from_bytes
from evopop.batched import group_members
from evopop.envs.spec import Vectorization
from evopop.evolution.engine import Engine, min_group
from evopop.evolution.task import GroupTask, TaskResult, TrainTask

Unit = TrainTask | GroupTask


@dataclass(frozen=True)
class Plan:
    """What the pool runs (`units`) and which tasks each unit answers for (`slots`)."""

    units: list[Unit]
    slots: list[list[int]]

    def scatter(self, results: Sequence[TaskResult | list[TaskResult]]) -> list[TaskResult]:
        """The units' results back in task order."""
        out: dict[int, TaskResult] = {}
        for slots, result in zip(self.slots, results, strict=True):
            for slot, one in zip(slots, result if isinstance(result, list) else [result],
                                 strict=True):
                out[slot] = one
        return [out[i] for i in range(len(out))]


def chunk_groups(groups: list[list[int]], workers: int) -> list[list[int]]:
    """Splits groups into near-equal chunks of at most ceil(members / workers), largest first,
    so that `workers` workers share the generation."""
    most = max(1, math.ceil(sum(len(g) for g in groups) / workers))
    chunks = []
    for group in groups:
        pieces = math.ceil(len(group) / most)
        base, extra = divmod(len(group), pieces)
        sizes = [base + (i < extra) for i in range(pieces)]
        starts = [sum(sizes[:i]) for i in range(pieces)]
        chunks.extend(group[s : s + n] for s, n in zip(starts, sizes, strict=True))
    return sorted(chunks, key=len, reverse=True)


def plan_tasks(tasks: Sequence[TrainTask], engine: Engine, workers: int) -> Plan:
    """One unit per member (per_member, or env workers: a group needs in-process vector envs),
    else a `GroupTask` for every chunk large enough for the engine, singles for the rest."""
    singles = Plan(list(tasks), [[i] for i in range(len(tasks))])
    if engine is Engine.PER_MEMBER or not tasks or \
            tasks[0].env.vectorization is Vectorization.INDEPENDENT:
        return singles
    groups = group_members([agent_from_bytes(t.agent) for t in tasks])
    units: list[Unit] = []
    slots: list[list[int]] = []
    for chunk in chunk_groups(groups, workers):
        if len(chunk) >= min_group(engine):
            units.append(GroupTask(tuple(tasks[i] for i in chunk)))
            slots.append(chunk)
        else:
            units.extend(tasks[i] for i in chunk)
            slots.extend([i] for i in chunk)
    return Plan(units, slots)
