"""Sweep files: a base run config, a grid of dotted keys, seeds; every run's config built up front.

A sweep is refused before any training if a single one of its runs would have a bad config, and
the error names the grid or `set` key as the user wrote it.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evopop.config import ConfigError, RunConfig, parse_config, set_key


class SweepError(ConfigError):
    """A problem with the sweep file itself (not with one of its run configs)."""


SEED_KEY = "seed"
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")
_SLUG_MAX = 80


class SweepFile(BaseModel):
    """The sweep file as written: `base`, `grid`, `seeds` and optional `set`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str | dict[str, Any] = Field(description="run config path (relative to the sweep "
                                                   "file) or an inline mapping")
    grid: dict[str, list[Any]] = Field(description="dotted config key -> values to try")
    seeds: list[int] = Field(description="every grid setting runs once per seed")
    overrides: dict[str, Any] = Field(default_factory=dict, alias="set",
                                      description="dotted keys applied to every run")

    @field_validator("grid", mode="before")
    @classmethod
    def _grid_lists(cls, grid: Any) -> Any:
        if not isinstance(grid, Mapping) or not grid:
            raise ValueError("must map at least one dotted config key to a list of values, "
                             "e.g. {evolution.mutation.architecture: [0.0, 0.2]}")
        for key, values in grid.items():
            if not isinstance(values, list):
                raise ValueError(f"'{key}' must be a list of values, got {values!r}")
            if not values:
                raise ValueError(f"'{key}' has no values; give at least one, e.g. [0.0, 0.2]")
            texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
            if len(set(texts)) != len(texts):
                raise ValueError(f"'{key}' lists a value twice: {values!r}")
        return grid

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, seeds: Any) -> Any:
        valid = isinstance(seeds, list) and seeds and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        if not valid:
            raise ValueError(f"must be a non-empty list of integers >= 0, e.g. [0, 1, 2]; "
                             f"got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"has duplicates: {seeds}")
        return seeds

    @model_validator(mode="after")
    def _keys_apart(self) -> SweepFile:
        for key in (*self.grid, *self.overrides):
            if key == SEED_KEY:
                raise ValueError(f"'{SEED_KEY}' cannot be a grid or set key; list seeds in 'seeds'")
        both = sorted(set(self.grid) & set(self.overrides))
        if both:
            raise ValueError(f"'{both[0]}' is in both grid and set; keep it in one")
        return self


@dataclass(frozen=True)
class PlannedRun:
    """One evolutionary run of the sweep: a grid setting and a seed."""

    setting: tuple[Any, ...]  # grid values, in the grid's key order
    seed: int
    name: str  # <slug>-seed<S>: its directory under <out>/runs/
    config: RunConfig


@dataclass(frozen=True)
class SweepPlan:
    """Every run of a sweep with its validated config, in grid order then seed order."""

    name: str
    keys: tuple[str, ...]
    settings: tuple[tuple[Any, ...], ...]
    seeds: tuple[int, ...]
    runs: tuple[PlannedRun, ...]
    spec: dict[str, Any]  # the sweep with its base inlined: recorded in the output directory

    def label(self, setting: Sequence[Any]) -> str:
        """`architecture=0.2, hyperparameter=0.3`: short key names where they are unambiguous."""
        names = short_names(self.keys)
        return ", ".join(f"{n}={_text(v)}" for n, v in zip(names, setting, strict=True))


def short_names(keys: Sequence[str]) -> list[str]:
    """The last part of each dotted key, or the whole key where two last parts clash."""
    leaves = [k.rsplit(".", 1)[-1] for k in keys]
    return leaves if len(set(leaves)) == len(leaves) else list(keys)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def setting_slugs(keys: Sequence[str], settings: Sequence[Sequence[Any]]) -> list[str]:
    """Filesystem-safe, stable names of grid settings (`architecture=0.2_lr=0.001`); a short
    hash of the readable form is added where it had to be changed (unsafe characters, length)
    or where two settings would share it."""
    names = short_names(keys)
    raw = ["_".join(f"{n}={_text(v)}" for n, v in zip(names, s, strict=True)) for s in settings]
    safe = [_SLUG_UNSAFE.sub("-", r)[:_SLUG_MAX] for r in raw]
    unique = len(set(safe)) == len(safe)
    return [
        s if unique and s == r else f"{s}-{hashlib.sha1(r.encode()).hexdigest()[:8]}"
        for s, r in zip(safe, raw, strict=True)
    ]


def _describe(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        valid = ["base", "grid", "seeds", "set"]
        match = difflib.get_close_matches(str(first["loc"][-1]), valid, n=1, cutoff=0.5)
        hint = f"did you mean '{match[0]}'?" if match else f"valid keys: {', '.join(valid)}"
        return f"{source}: unknown sweep key '{where}'; {hint}"
    if first["type"] == "missing":
        return f"{source}: missing '{where}' (the sweep needs base, grid and seeds)"
    message = first["msg"].removeprefix("Value error, ")
    return f"{source}: {where}: {message}" if where else f"{source}: {message}"


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise SweepError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise SweepError(f"malformed YAML in {what} {path}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{what} {path} must hold a mapping")
    return data


def _base_data(base: str | dict[str, Any], root: Path,
               source: str) -> tuple[dict[str, Any], str]:
    """The base run config as a raw mapping, and how to name it in errors."""
    if isinstance(base, dict):
        data, where = copy.deepcopy(base), "the inline base config"
    else:
        path = root / base
        try:
            data, where = _read_mapping(path, "base config"), f"base config {path}"
        except SweepError as err:
            raise SweepError(f"{source}: {err}") from None
    if not isinstance(data.get("evolution"), dict):
        raise SweepError(f"{source}: {where} has no evolution section; "
                         f"a sweep compares evolutionary runs")
    return data, where


def _with(data: dict[str, Any], items: Mapping[str, Any],
          context: str) -> tuple[dict[str, Any], RunConfig]:
    """A copy of `data` with dotted overrides applied, and its validated config; errors are
    prefixed by `context`."""
    out = copy.deepcopy(data)
    try:
        for key, value in items.items():
            set_key(out, key, value)
        return out, parse_config(out)
    except ConfigError as err:
        raise ConfigError(f"{context}: {err}") from None


def _common_data(spec: SweepFile, base: dict[str, Any], where: str,
                 source: str) -> dict[str, Any]:
    """Base plus `set`, each key checked alone first so an error names the key that caused it."""
    _with(base, {}, f"{source}: {where}")
    for key, value in spec.overrides.items():
        _with(base, {key: value}, f"{source}: set key '{key}'")
    common, _ = _with(base, spec.overrides, f"{source}: set")
    for key, values in spec.grid.items():
        for value in values:
            _with(common, {key: value}, f"{source}: grid key '{key}' = {_text(value)}")
    return common


def plan_sweep(data: Mapping[str, Any], root: Path, name: str, source: str = "sweep") -> SweepPlan:
    """Expands grid x seeds into validated run configs. `root` resolves a relative base path;
    `source` names the sweep in error messages."""
    try:
        spec = SweepFile.model_validate(dict(data))
    except ValidationError as err:
        raise SweepError(_describe(err, source)) from None
    base, where = _base_data(spec.base, root, source)
    common = _common_data(spec, base, where, source)
    keys = tuple(spec.grid)
    settings = tuple(itertools.product(*spec.grid.values()))
    runs = []
    for setting, slug in zip(settings, setting_slugs(keys, settings), strict=True):
        for seed in spec.seeds:
            run_name = f"{slug}-seed{seed}"
            items = {**dict(zip(keys, setting, strict=True)), SEED_KEY: seed}
            _, config = _with(common, items, f"{source}: run {run_name}")
            if config.evolution is None:
                raise SweepError(f"{source}: run {run_name} has no evolution section")
            runs.append(PlannedRun(setting, seed, run_name, config))
    recorded = {"base": base, "grid": spec.grid, "seeds": spec.seeds, "set": spec.overrides}
    return SweepPlan(name, keys, settings, tuple(spec.seeds), tuple(runs), recorded)


def load_sweep(path: Path) -> SweepPlan:
    """Reads and plans a sweep file; a relative `base` is resolved next to the file."""
    path = Path(path)
    return plan_sweep(_read_mapping(path, "sweep file"), path.parent, path.stem, str(path))
