"""Planning a generation's tasks for an engine: batched groups, or one task per member.

`plan_tasks` groups the members that can stack (`evopop.batched.group_members`; of other
widths too where the group's update is stacked on one shared env), lets the
engine say how each group trains (`batching`), and splits the groups into chunks so every
worker of the pool has work. A stacked update pads each member's minibatch to its chunk's
largest, so fully batched groups round as their chunks do: the same seed gives the same result
for the same number of workers (`parallel_members`), on any placement and after resume. With
collection alone batched (`Engine.COLLECTION`), a member's arithmetic is the same in a chunk of
any size from two (its slices of the batched policy step; tests/test_group_train.py), so its
runs give the same result for any number of workers; a group is never cut into a chunk of one,
which would round differently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from evopop.agents.checkpoint import agent_from_bytes
from evopop.batched import group_members
from evopop.envs.spec import Vectorization
from evopop.evolution.engine import Batching, Engine, batching, pads_widths
from evopop.evolution.task import SHARED_VECTORIZATIONS, GroupTask, TaskResult, TrainTask

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
    so that `workers` workers share the generation; a group of two or more is never cut into
    a chunk of one (a batched chunk of one would round differently from a larger one)."""
    most = max(1, math.ceil(sum(len(g) for g in groups) / workers))
    chunks = []
    for group in groups:
        pieces = max(1, min(math.ceil(len(group) / most), len(group) // 2))
        base, extra = divmod(len(group), pieces)
        sizes = [base + (i < extra) for i in range(pieces)]
        starts = [sum(sizes[:i]) for i in range(pieces)]
        chunks.extend(group[s : s + n] for s, n in zip(starts, sizes, strict=True))
    return sorted(chunks, key=len, reverse=True)


def plan_tasks(tasks: Sequence[TrainTask], engine: Engine, workers: int) -> Plan:
    """One unit per member (per_member; env workers, as a group needs in-process vector envs;
    a device other than the CPU, as the batched learner computes on the CPU), else a
    `GroupTask` for every chunk the engine batches (`batching`), singles for the rest."""
    singles = Plan(list(tasks), [[i] for i in range(len(tasks))])
    if engine is Engine.PER_MEMBER or not tasks or tasks[0].device != "cpu" or \
            tasks[0].env.vectorization is Vectorization.INDEPENDENT:
        return singles
    shared = tasks[0].env.vectorization in SHARED_VECTORIZATIONS
    groups = group_members([agent_from_bytes(t.agent) for t in tasks],
                           pad_widths=pads_widths(engine, shared))
    modes = {i: batching(engine, len(g), shared) for g in groups for i in g}
    units: list[Unit] = []
    slots: list[list[int]] = []
    for chunk in chunk_groups(groups, workers):
        mode = modes[chunk[0]]
        if mode is not Batching.NONE:
            units.append(GroupTask(tuple(tasks[i] for i in chunk), mode is Batching.FULL))
            slots.append(chunk)
        else:
            units.extend(tasks[i] for i in chunk)
            slots.extend([i] for i in chunk)
    return Plan(units, slots)
