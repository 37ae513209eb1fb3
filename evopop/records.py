"""Typed records of a run: one `GenerationRecord` per metrics.jsonl line, one `LineageRecord`
per lineage.jsonl line, and the `RunSummary` of summary.json.

This module is the only place that spells the JSON keys. Every record carries `schema_version`;
records written before versioning carry none and read as version 1 (their keys are the same).
Non-finite fitness (a diverged member) is held as -inf and written as null: strict JSON readers
reject -Infinity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from evopop.errors import UserError

SCHEMA_VERSION = 1
SCHEMA_KEY = "schema_version"
Json = dict[str, Any]
T = TypeVar("T")


class RecordError(UserError):
    """A JSON object that is not the record it should be (a foreign or damaged file)."""


class SchemaVersionError(RecordError):
    """A record written by an evopop with another schema version."""


def json_number(value: float) -> float | None:
    """A float as strict JSON: non-finite becomes null."""
    return value if math.isfinite(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fitness(value: Any) -> float:
    """null (a diverged member, or no finite value yet) reads back as -inf."""
    if value is None:
        return -math.inf
    if not _is_number(value):
        raise ValueError("not a number or null")
    return float(value)


def _optional_number(value: Any) -> float | None:
    if value is None:
        return None
    if not _is_number(value):
        raise ValueError("not a number or null")
    return float(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("not an integer")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _number(value: Any) -> float:
    if not _is_number(value):
        raise ValueError("not a number")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("not true/false")
    return value


def _mapping(value: Any) -> Json:
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _optional_mapping(value: Any) -> Json | None:
    return None if value is None else _mapping(value)


def _optional_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _numbers(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ValueError("not a list")
    return tuple(_number(v) for v in value)


_MISSING = object()


def _read(data: Mapping[str, Any], key: str, parse: Callable[[Any], T], what: str,
          default: Any = _MISSING) -> T:
    """`parse(data[key])`, or `default` when absent; anything else is a one-line RecordError."""
    if key not in data:
        if default is _MISSING:
            raise RecordError(f"not a {what}: '{key}' is missing")
        return default
    try:
        return parse(data[key])
    except ValueError as err:
        raise RecordError(f"not a {what}: '{key}' is {err}") from None


def _object(data: Any, what: str) -> Mapping[str, Any]:
    """The record's JSON object, once its schema version is known to be this one's."""
    if not isinstance(data, dict):
        raise RecordError(f"not a {what}: not a JSON object")
    version = data.get(SCHEMA_KEY, 1)
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(f"a {what} of schema version {version!r}; this evopop reads "
                                 f"version {SCHEMA_VERSION}")
    return data


@dataclass(frozen=True)
class MemberRecord:
    """One member in one generation's metrics line (not a record of its own: no version)."""

    id: int
    parent_id: int | None
    fitness: float  # mean evaluation return; -inf for a diverged member
    eval_returns: tuple[float, ...]
    train_return: float | None  # mean of the last 20 training episodes; None if none ended
    finite: bool
    env_steps: int
    hparams: Json
    spec: Json
    mutation: Json | None
    train_metrics: Json | None = None  # env-reported episode metrics, only if the env has any
    eval_metrics: Json | None = None
    env_timeouts: int = 0  # env workers replaced for exceeding env.step_timeout_s

    WHAT = "member record"

    def to_json(self) -> Json:
        data = {"id": self.id, "parent_id": self.parent_id, "fitness": json_number(self.fitness),
                "eval_returns": list(self.eval_returns), "train_return": self.train_return,
                "finite": self.finite, "env_steps": self.env_steps, "hparams": self.hparams,
                "spec": self.spec, "mutation": self.mutation}
        if self.train_metrics is not None or self.eval_metrics is not None:
            data["train_metrics"] = self.train_metrics or {}
            data["eval_metrics"] = self.eval_metrics or {}
        if self.env_timeouts:  # only when it happened: lines stay as they were otherwise
            data["env_timeouts"] = self.env_timeouts
        return data

    @classmethod
    def from_json(cls, data: Any) -> MemberRecord:
        if not isinstance(data, dict):
            raise RecordError(f"not a {cls.WHAT}: not a JSON object")
        w = cls.WHAT
        return cls(
            id=_read(data, "id", _int, w), parent_id=_read(data, "parent_id", _optional_int, w),
            fitness=_read(data, "fitness", _fitness, w),
            eval_returns=_read(data, "eval_returns", _numbers, w),
            train_return=_read(data, "train_return", _optional_number, w),
            finite=_read(data, "finite", _bool, w), env_steps=_read(data, "env_steps", _int, w),
            hparams=_read(data, "hparams", _mapping, w), spec=_read(data, "spec", _mapping, w),
            mutation=_read(data, "mutation", _optional_mapping, w),
            train_metrics=_read(data, "train_metrics", _optional_mapping, w, None),
            eval_metrics=_read(data, "eval_metrics", _optional_mapping, w, None),
            env_timeouts=_read(data, "env_timeouts", _int, w, 0))


def _members(value: Any) -> tuple[MemberRecord, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("not a non-empty list")
    return tuple(MemberRecord.from_json(m) for m in value)


@dataclass(frozen=True)
class GenerationRecord:
    """One metrics.jsonl line: every member after its training and evaluation."""

    generation: int
    total_env_steps: int  # all members, all generations so far
    wall_s: float
    steps_per_s: float | None
    best_fitness: float  # best elite fitness of any generation so far
    elite_fitness: float  # this generation's elite
    members: tuple[MemberRecord, ...]
    elite_metrics: Json | None = None  # the elite's evaluation-episode metrics, if the env has any

    WHAT = "generation record"

    def to_json(self) -> Json:
        data = {SCHEMA_KEY: SCHEMA_VERSION, "generation": self.generation,
                "total_env_steps": self.total_env_steps, "wall_s": self.wall_s,
                "steps_per_s": self.steps_per_s, "best_fitness": json_number(self.best_fitness),
                "elite_fitness": json_number(self.elite_fitness),
                "members": [m.to_json() for m in self.members]}
        if self.elite_metrics is not None:
            data["elite_metrics"] = self.elite_metrics
        return data

    @classmethod
    def from_json(cls, data: Any) -> GenerationRecord:
        w = cls.WHAT
        data = _object(data, w)
        return cls(
            generation=_read(data, "generation", _int, w),
            total_env_steps=_read(data, "total_env_steps", _int, w),
            wall_s=_read(data, "wall_s", _number, w),
            steps_per_s=_read(data, "steps_per_s", _optional_number, w),
            best_fitness=_read(data, "best_fitness", _fitness, w),
            elite_fitness=_read(data, "elite_fitness", _fitness, w),
            members=_read(data, "members", _members, w),
            elite_metrics=_read(data, "elite_metrics", _optional_mapping, w, None))


@dataclass(frozen=True)
class LineageRecord:
    """One lineage.jsonl line: a member as it was born (founder or mutated child)."""

    generation: int
    id: int
    parent_id: int | None
    born: int
    mutation: Json | None  # `MutationEvent.to_dict()`; None for a founder

    WHAT = "lineage record"

    def to_json(self) -> Json:
        return {SCHEMA_KEY: SCHEMA_VERSION, "generation": self.generation, "id": self.id,
                "parent_id": self.parent_id, "born": self.born, "mutation": self.mutation}

    @classmethod
    def from_json(cls, data: Any) -> LineageRecord:
        w = cls.WHAT
        data = _object(data, w)
        return cls(generation=_read(data, "generation", _int, w), id=_read(data, "id", _int, w),
                   parent_id=_read(data, "parent_id", _optional_int, w),
                   born=_read(data, "born", _int, w),
                   mutation=_read(data, "mutation", _optional_mapping, w))


@dataclass(frozen=True)
class FreshReturn:
    """The final elite on fresh deterministic episodes `first_seed ..` (none of them an
    evaluation episode of the run): what it scores on episodes selection never saw."""

    mean: float
    std: float
    episodes: int
    first_seed: int

    WHAT = "fresh-episode return"

    def to_json(self) -> Json:
        return {"mean": self.mean, "std": self.std, "episodes": self.episodes,
                "first_seed": self.first_seed}

    @classmethod
    def from_json(cls, data: Any) -> FreshReturn:
        w = cls.WHAT
        data = _mapping(data)
        return cls(mean=_read(data, "mean", _number, w), std=_read(data, "std", _number, w),
                   episodes=_read(data, "episodes", _int, w),
                   first_seed=_read(data, "first_seed", _int, w))


def _optional_fresh(value: Any) -> FreshReturn | None:
    return None if value is None else FreshReturn.from_json(value)


@dataclass(frozen=True)
class RunSummary:
    """summary.json: how a finished run ended. A run whose whole population diverged has no
    elite (`diverged`, no `elite_sha256`, fitness -inf). `elite_fresh` is absent when the run
    played no fresh episodes (`final_eval_episodes: 0`, or a summary from before it existed)."""

    target_reached: bool
    best_fitness: float  # best elite fitness of any generation
    elite_fitness: float  # the last generation's elite (the one in elite.safetensors)
    generations: int
    total_env_steps: int
    wall_s: float
    elite_sha256: str | None
    diverged: bool = False
    elite_fresh: FreshReturn | None = None

    WHAT = "run summary"

    def to_json(self) -> Json:
        data = {SCHEMA_KEY: SCHEMA_VERSION, "target_reached": self.target_reached,
                "best_fitness": json_number(self.best_fitness),
                "elite_fitness": json_number(self.elite_fitness),
                "generations": self.generations, "total_env_steps": self.total_env_steps,
                "wall_s": self.wall_s, "elite_sha256": self.elite_sha256,
                "diverged": self.diverged}
        if self.elite_fresh is not None:  # an optional key: version-1 readers know the rest
            data["elite_fresh"] = self.elite_fresh.to_json()
        return data

    @classmethod
    def from_json(cls, data: Any) -> RunSummary:
        w = cls.WHAT
        data = _object(data, w)
        return cls(
            target_reached=_read(data, "target_reached", _bool, w),
            best_fitness=_read(data, "best_fitness", _fitness, w),
            elite_fitness=_read(data, "elite_fitness", _fitness, w),
            generations=_read(data, "generations", _int, w),
            total_env_steps=_read(data, "total_env_steps", _int, w),
            wall_s=_read(data, "wall_s", _number, w),
            elite_sha256=_read(data, "elite_sha256", _optional_str, w, None),
            diverged=_read(data, "diverged", _bool, w, False),
            elite_fresh=_read(data, "elite_fresh", _optional_fresh, w, None))
