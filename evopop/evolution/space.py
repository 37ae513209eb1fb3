"""Hyperparameter search space: bounds, integer-ness and log scale of each mutable PPO field."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from evopop.agents.spec import PPOParams

DEFAULT_PERTURB_FACTOR = 0.2
"""A mutation moves a value by up to 20% (log ranges) or 20% of the range width (linear)."""

_RANGE_KEYS = frozenset({"low", "high", "log", "kind"})


class HPType(str, Enum):
    """Whether a hyperparameter takes integer or real values."""

    INT = "int"
    FLOAT = "float"


@dataclass(frozen=True)
class HPRange:
    """Closed interval `[low, high]` a hyperparameter lives in.

    `log=True` samples and perturbs on a log scale, right for scale-like values (lr, batch size)
    where 1e-4 -> 2e-4 matters as much as 1e-3 -> 2e-3.
    """

    low: float
    high: float
    kind: HPType = HPType.FLOAT
    log: bool = False

    def __post_init__(self) -> None:
        kind = HPType(self.kind)
        object.__setattr__(self, "kind", kind)
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                raise ValueError(f"bounds must be numbers, got {bound!r}")
        if not isinstance(self.log, bool):
            raise ValueError(f"log must be true or false, got {self.log!r}")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"bounds must be finite, got [{self.low}, {self.high}]")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got {self.low}")
        if kind is HPType.INT:
            if self.low != int(self.low) or self.high != int(self.high):
                raise ValueError(
                    f"an int range needs integer bounds, got [{self.low}, {self.high}]")
            object.__setattr__(self, "low", int(self.low))
            object.__setattr__(self, "high", int(self.high))
        else:
            object.__setattr__(self, "low", float(self.low))
            object.__setattr__(self, "high", float(self.high))

    def clip(self, value: float) -> float | int:
        """Nearest value in bounds, rounded to an int for INT ranges."""
        if math.isnan(value):
            raise ValueError("cannot clip NaN into a hyperparameter range")
        clipped = min(max(float(value), self.low), self.high)
        return round(clipped) if self.kind is HPType.INT else clipped

    def sample(self, rng: np.random.Generator) -> float | int:
        """Uniform (log-uniform if `log`) draw; ints draw from `[low - .5, high + .5]` and round,
        so the end points are as likely as any other integer."""
        pad = 0.5 if self.kind is HPType.INT else 0.0
        lo, hi = self.low - pad, self.high + pad
        if self.log:
            return self.clip(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        return self.clip(rng.uniform(lo, hi))

    def perturb(
        self, value: float, rng: np.random.Generator, factor: float = DEFAULT_PERTURB_FACTOR
    ) -> float | int:
        """Moves `value` up or down (coin flip; away from a bound it sits on), then clips.

        Log ranges multiply or divide by a factor drawn from `[1, 1 + factor]`; linear ranges add
        or subtract up to `factor x (high - low)`, so a value of 0 can still move. An int that
        would round back to itself moves by one instead.
        """
        if not factor > 0:
            raise ValueError(f"perturbation factor must be > 0, got {factor}")
        current = self.clip(value)
        up = bool(rng.random() < 0.5)
        if current >= self.high:
            up = False
        elif current <= self.low:
            up = True
        u = rng.uniform(0.0, factor)
        sign = 1.0 if up else -1.0
        if self.log:
            moved = current * (1.0 + u) ** sign
        else:
            moved = current + sign * u * (self.high - self.low)
        if self.kind is HPType.INT and round(moved) == current:
            moved = current + sign
        return self.clip(moved)


_FIELD_HINTS = typing.get_type_hints(PPOParams)


def _field_kind(name: str) -> HPType:
    """INT or FLOAT from the PPOParams annotation; unknown or non-numeric fields are rejected."""
    if name not in _FIELD_HINTS:
        closest = difflib.get_close_matches(name, list(_FIELD_HINTS), n=1, cutoff=0.0)
        hint = f"; did you mean {closest[0]!r}?" if closest else ""
        raise ValueError(f"unknown hyperparameter {name!r}{hint}")
    hint_type = _FIELD_HINTS[name]
    if hint_type is bool:
        raise ValueError(f"hyperparameter {name!r} is a switch, not a numeric range")
    return HPType.INT if hint_type is int else HPType.FLOAT


def _check_bounds(name: str, hp_range: HPRange) -> None:
    """Both bounds must be legal values of the field (e.g. lr > 0, gamma <= 1)."""
    for bound in (hp_range.low, hp_range.high):
        try:
            PPOParams().replace(**{name: bound})
        except ValueError as err:
            msg = f"bound {bound!r} of hyperparameter {name!r} is invalid: {err}"
            raise ValueError(msg) from err


class HPSpace(Mapping[str, HPRange]):
    """Immutable mapping of PPOParams field name -> HPRange: which hyperparameters evolve, where."""

    def __init__(self, ranges: Mapping[str, HPRange]) -> None:
        for name, hp_range in ranges.items():
            kind = _field_kind(name)
            if kind is HPType.FLOAT and hp_range.kind is HPType.INT:
                raise ValueError(f"hyperparameter {name!r} is a float field, not an int")
            _check_bounds(name, hp_range)
        self._ranges = dict(ranges)

    def __getitem__(self, name: str) -> HPRange:
        return self._ranges[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ranges)

    def __len__(self) -> int:
        return len(self._ranges)

    def __hash__(self) -> int:
        return hash(tuple(self._ranges.items()))

    def __repr__(self) -> str:
        return f"HPSpace({self._ranges!r})"

    def __str__(self) -> str:
        """Compact form for docs: `lr 1e-05..0.01 log, ...`."""
        return ", ".join(f"{name} {r.low:g}..{r.high:g}{' log' if r.log else ''}"
                         for name, r in self._ranges.items())

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> HPSpace:
        """From config: `{"lr": {"low": 1e-5, "high": 1e-2, "log": true}}`; `kind` ("int" or
        "float") defaults to the PPOParams field's type."""
        ranges = {}
        for name, entry in data.items():
            kind = _field_kind(name)
            unknown = set(entry) - _RANGE_KEYS
            if unknown:
                raise ValueError(f"hyperparameter {name!r}: unknown keys {sorted(unknown)}; "
                                 f"expected {sorted(_RANGE_KEYS)}")
            if "low" not in entry or "high" not in entry:
                raise ValueError(f"hyperparameter {name!r} needs both 'low' and 'high'")
            ranges[name] = HPRange(entry["low"], entry["high"], HPType(entry.get("kind", kind)),
                                   entry.get("log", False))
        return cls(ranges)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-ready form that `from_dict` reads back."""
        return {name: {**dataclasses.asdict(r), "kind": r.kind.value}
                for name, r in self._ranges.items()}

    def sample_params(self, params: PPOParams, rng: np.random.Generator) -> PPOParams:
        """`params` with every hyperparameter of the space drawn afresh (random initial values)."""
        return params.replace(**{name: r.sample(rng) for name, r in self._ranges.items()})

    def mutate_params(
        self,
        params: PPOParams,
        rng: np.random.Generator,
        names: Sequence[str] | None = None,
        factor: float = DEFAULT_PERTURB_FACTOR,
    ) -> tuple[PPOParams, str, Any, float | int]:
        """Perturbs one hyperparameter chosen uniformly from `names` (default: the whole space).

        Returns (new params, name, old value, new value). A field that is unset (`None`) is
        sampled instead of perturbed.
        """
        choices = list(self._ranges) if names is None else list(names)
        missing = [n for n in choices if n not in self._ranges]
        if missing or not choices:
            raise ValueError(f"cannot mutate {missing or 'nothing'}: space has {list(self)}")
        name = choices[int(rng.integers(len(choices)))]
        old = getattr(params, name)
        hp_range = self._ranges[name]
        new = hp_range.sample(rng) if old is None else hp_range.perturb(old, rng, factor)
        return params.replace(**{name: new}), name, old, new


DEFAULT_HP_SPACE = HPSpace({
    "lr": HPRange(1e-5, 1e-2, HPType.FLOAT, log=True),
    "batch_size": HPRange(32, 4096, HPType.INT, log=True),
    "learn_step": HPRange(16, 4096, HPType.INT, log=True),
    "ent_coef": HPRange(0.0, 0.1),
    "clip_coef": HPRange(0.05, 0.5),
    "gae_lambda": HPRange(0.8, 1.0),
    "update_epochs": HPRange(1, 20, HPType.INT),
})
