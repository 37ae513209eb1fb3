"""How a generation's members train: one task per member, or groups as one batched task
(the choice; `evopop.evolution.plan` applies it). Light: the CLI imports it for `--engine`."""

from __future__ import annotations

from enum import Enum


class Engine(str, Enum):
    """per_member: `train_agent` per member; batched: groups of stackable members train as
    one batched computation (`train_group`); auto: what measured fastest for the group's size
    (`batching`)."""

    PER_MEMBER = "per_member"
    BATCHED = "batched"
    AUTO = "auto"


class Batching(str, Enum):
    """How much of a group's learning cycle runs as one computation."""

    NONE = "none"  # one task per member (`train_agent`)
    COLLECTION = "collection"  # one env and one policy step per env step; each member's update
    FULL = "full"  # collection and the PPO update stacked


AUTO_MIN_GROUP = 12
"""The smallest group `auto` trains fully batched; groups of two or more below it batch their
collection only, where the env shares (`batching`). Chosen by group, not by chunk, so that
groups below it give the same result for any number of workers (`evopop.evolution.plan`). W1
generations, one thread per process (benchmarks/population_scaling.py, 2026-12-02, with
shared-env collection): a chunk's full stack overtook batched collection between 4 and 6
members, so 12 lets each of two workers' chunks reach 6. Since the stacked LSTM runs each member
through oneDNN (2026-12-06) the full stack ties at 2 and wins by 12-21 % from 4 in one process,
but on two workers W1's P = 4 ran within noise either way (8.7-9.7 s for 4 generations), so
the threshold stays where mid-sized groups keep their result for any number of workers."""


def batching(engine: Engine, group: int, shared_env: bool) -> Batching:
    """What the engine batches of a group of `group` stackable members; `shared_env`: the
    members can step one env of all their copies (`SharedRollouts`), without which batching
    collection alone does not pay."""
    if engine is Engine.PER_MEMBER or group < 2:
        return Batching.NONE
    if engine is Engine.BATCHED or group >= AUTO_MIN_GROUP:
        return Batching.FULL
    return Batching.COLLECTION if shared_env else Batching.NONE


WORKER_MODULES = ("evopop.envs.envpool_import", "evopop.evolution.backends")
"""What a member worker runs (envpool, lightly imported, and the tasks of every engine), for
the fork server to import once before it forks any worker. Named, not imported: importing it
pulls in torch."""
