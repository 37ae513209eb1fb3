"""How a generation's members train: one task per member, or groups as one batched task
(the choice; `evopop.evolution.plan` applies it). Light: the CLI imports it for `--engine`."""

from __future__ import annotations

from enum import Enum


class Engine(str, Enum):
    """per_member: `train_agent` per member; collection: groups of stackable members step one
    env of all their copies with one batched policy step, each member its own update (the
    same result for any number of workers); batched: groups train as one batched computation
    (`train_group`); auto: what measured fastest (`batching`)."""

    PER_MEMBER = "per_member"
    COLLECTION = "collection"
    BATCHED = "batched"
    AUTO = "auto"


class Batching(str, Enum):
    """How much of a group's learning cycle runs as one computation."""

    NONE = "none"  # one task per member (`train_agent`)
    COLLECTION = "collection"  # one env and one policy step per env step; each member's update
    FULL = "full"  # collection and the PPO update stacked


def batching(engine: Engine, group: int, shared_env: bool) -> Batching:
    """What the engine batches of a group of `group` stackable members; `shared_env`: the
    members can step one env of all their copies (`SharedRollouts`), without which batching
    collection alone does not pay.

    `auto` stacks every group of two or more on a shared env (on an env per member, `async`,
    where a chunk's P x N env processes would share one worker, unmeasured, members train one
    by one): whole W1 runs (P = 4, chunks of two) took 0.91x the time with the update stacked
    too as with collection alone, GRU and MLP variants 0.95x and 0.84x, W2 0.86x
    (benchmarks/RESULTS.md, 2026-12-07, late night). A stacked update pads
    each member's minibatches to its chunk's largest, so such runs round as their chunks do:
    `collection` is the engine whose result does not depend on the number of workers."""
    if engine is Engine.PER_MEMBER or group < 2:
        return Batching.NONE
    if engine is Engine.COLLECTION or (engine is Engine.AUTO and not shared_env):
        return Batching.COLLECTION if shared_env else Batching.NONE
    return Batching.FULL


def pads_widths(engine: Engine, shared_env: bool) -> bool:
    """Whether the engine stacks members of other widths (`evopop.batched.padding`): where a
    group's update is stacked on one shared env, whose states live at the stack's widths."""
    return shared_env and batching(engine, 2, shared_env) is Batching.FULL


WORKER_MODULES = ("evopop.envs.envpool_import", "evopop.evolution.backends")
"""What a member worker runs (envpool, lightly imported, and the tasks of every engine), for
the fork server to import once before it forks any worker. Named, not imported: importing it
pulls in torch."""
