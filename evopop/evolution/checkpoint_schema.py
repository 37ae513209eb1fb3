"""The JSON header of a run checkpoint, validated before any member is built from it.

A checkpoint is data from outside (a file anyone can edit, a disk that can corrupt it), so
`--resume` parses it the way agent files are parsed: a strict schema (known keys, exact types,
ranges), then counters that must agree with each other and with the members (ids below
`next_id` and unique, parents older than their children, one elite fitness per finished
generation), and tensors that must all belong to a member slot. Each member's own header and
weights then go through the agent-file checks. Every failure is one `AgentFileError`. There is
no RNG state to check: every random stream is derived from the seed and the counters.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from evopop.agents.file_schema import AgentFileError
from evopop.errors import one_line
from evopop.evolution.settings import MAX_POPULATION

RUN_FORMAT = "evopop-run"
MAX_COUNT = 1 << 62
"""Counters (ids, generations, env steps) stay far below this; a larger one is crafted."""
_SLOT_KEY = re.compile(r"m(\d{1,4})\.")


def _no_nan(value: float) -> float:
    """Fitness may be -inf (a diverged member), never NaN or +inf."""
    if math.isnan(value) or value == math.inf:
        raise ValueError("must be a number or -inf")
    return value


Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Fitness = Annotated[float, AfterValidator(_no_nan)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MemberEntry(_Strict):
    id: Count
    parent_id: Count | None
    born: Count
    env_steps: Count
    fitness: list[Fitness]
    mutation: dict[str, Any] | None
    agent: dict[str, Any]  # an agent header: `evopop.agents.file_schema`


class RunHeader(_Strict):
    """What a run checkpoint's metadata must be (`LoopState` counters plus members)."""

    format: Literal["evopop-run"]
    format_version: Literal[1]
    generation: Count
    next_id: Count
    total_env_steps: Count
    wall_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    best_fitness: Fitness
    elite_history: list[Fitness]
    target_reached: bool
    finished: bool
    batch_width: Annotated[int, Field(ge=1, le=MAX_POPULATION)] | None = None  # older: absent
    members: list[MemberEntry] = Field(min_length=1, max_length=MAX_POPULATION)


def _check_counters(run: RunHeader) -> None:
    """The counters the generation loop keeps must agree (see `evolution.loop`)."""
    trained = run.generation + int(run.finished)  # a finished run's last generation stays
    if len(run.elite_history) != trained:
        raise ValueError(f"{len(run.elite_history)} elite fitnesses for {trained} trained "
                         f"generations")
    if run.best_fitness != max(run.elite_history, default=-math.inf):
        raise ValueError("best_fitness is not the best of elite_history")
    if run.target_reached and not run.finished:
        raise ValueError("target_reached but not finished")
    ids = [m.id for m in run.members]
    if len(set(ids)) != len(ids) or max(ids) >= run.next_id:
        raise ValueError(f"member ids {ids} must be unique and below next_id {run.next_id}")
    for m in run.members:
        if m.parent_id is not None and m.parent_id >= m.id:
            raise ValueError(f"member {m.id} has parent {m.parent_id}: parents are older")
        if m.born > run.generation or len(m.fitness) > trained:
            raise ValueError(f"member {m.id} was born or scored after generation "
                             f"{run.generation}")
        if m.env_steps > run.total_env_steps:
            raise ValueError(f"member {m.id} trained {m.env_steps} env steps, more than the "
                             f"run's {run.total_env_steps}")


def _check_slots(run: RunHeader, tensors: dict[str, torch.Tensor]) -> None:
    for key in tensors:
        match = _SLOT_KEY.match(key)
        if match is None or int(match[1]) >= len(run.members):
            raise ValueError(f"tensor {key[:60]!r} belongs to no member")


def validate_run_header(meta: Any, tensors: dict[str, torch.Tensor], source: str) -> RunHeader:
    """The checkpoint's header, once its schema, counters and tensor names are checked."""
    try:
        run = RunHeader.model_validate(meta)
        _check_counters(run)
        _check_slots(run, tensors)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AgentFileError(one_line(f"{source}: malformed run checkpoint ({where}: "
                                      f"{first['msg']})")) from None
    except ValueError as error:
        raise AgentFileError(one_line(f"{source}: inconsistent run checkpoint ({error})")) \
            from None
    return run
