"""How a generation's members train: one task per member, or groups as one batched task
(the choice; `evopop.evolution.plan` applies it). Light: the CLI imports it for `--engine`."""

from __future__ import annotations

import math
from enum import Enum


class Engine(str, Enum):
    """per_member: `train_agent` per member; batched: groups of stackable members train as
    one batched computation (`train_group`); auto: batched for chunks of at least
    `AUTO_MIN_GROUP` members, where it measured faster."""

    PER_MEMBER = "per_member"
    BATCHED = "batched"
    AUTO = "auto"


AUTO_MIN_GROUP = 8
"""The smallest chunk `auto` trains batched. W1 generations, one thread
(benchmarks/population_scaling.py, 2026-12-02 with W1's shared encoder): batched ran 0.61x the
one-by-one speed at P=1, 0.81x at 2, 1.07x at 4, 1.33x at 8 and 1.36x at 16. Chunks are
planned per worker, and a pool of two runs two members at once, so a chunk must beat
one-by-one clearly: from 8 on it does."""


def min_group(engine: Engine) -> float:
    """The smallest chunk of stackable members the engine trains batched."""
    sizes = {Engine.PER_MEMBER: math.inf, Engine.BATCHED: 2, Engine.AUTO: AUTO_MIN_GROUP}
    return sizes[engine]


WORKER_MODULES = ("evopop.envs.envpool_import", "evopop.evolution.backends")
"""What a member worker runs (envpool, lightly imported, and the tasks of every engine), for
the fork server to import once before it forks any worker. Named, not imported: importing it
pulls in torch."""
