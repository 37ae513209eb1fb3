"""The JSON header of an agent file, validated before anything is built from it, and the
tensors, checked against the agent before they are loaded into it.

A header is data from outside (a file, a worker, a checkpoint), so it is parsed by strict schemas:
known keys only, exact types, sane ranges, known space types with bounded sizes. Then the number of
network parameters the spec implies must equal the number of weights the file actually carries, so
a file can never make evopop allocate more than it holds. Every failure is one `AgentFileError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Annotated, Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from evopop.agents.agent import Agent
from evopop.agents.networks import parameter_count
from evopop.agents.spaces import ActionSpec, ObsEncoder
from evopop.agents.spec import NetSpec, PPOParams
from evopop.errors import UserError, one_line

MAX_SPACE_SIZE = 1 << 16
"""Most scalars an observation or action space may have (a 256 x 256 image is at the limit)."""
MAX_SPACE_DEPTH = 4
"""Deepest nesting of Dict/Tuple spaces."""


class AgentFileError(UserError):
    """An agent file that is missing, corrupt, of another format or of an unknown version."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Size = Annotated[int, Field(ge=1, le=MAX_SPACE_SIZE)]


class BoxSpace(_Strict):
    type: Literal["Box"]
    low: Any
    high: Any
    shape: list[Size] = Field(max_length=8)
    dtype: Literal["float32", "float64", "int64", "int32", "uint8"]


class DiscreteSpace(_Strict):
    type: Literal["Discrete"]
    n: Size
    start: int


class MultiDiscreteSpace(_Strict):
    type: Literal["MultiDiscrete"]
    nvec: list[Size] = Field(min_length=1, max_length=MAX_SPACE_SIZE)
    start: list[int] = Field(min_length=1, max_length=MAX_SPACE_SIZE)


class MultiBinarySpace(_Strict):
    type: Literal["MultiBinary"]
    n: Size | list[Size]


class DictSpace(_Strict):
    type: Literal["Dict"]
    spaces: dict[str, SpaceModel] = Field(min_length=1, max_length=64)


class TupleSpace(_Strict):
    type: Literal["Tuple"]
    spaces: list[SpaceModel] = Field(min_length=1, max_length=64)


SpaceModel = Annotated[BoxSpace | DiscreteSpace | MultiDiscreteSpace | MultiBinarySpace
                       | DictSpace | TupleSpace, Field(discriminator="type")]
DictSpace.model_rebuild()
TupleSpace.model_rebuild()


class AgentHeader(_Strict):
    """What an agent file's metadata must be."""

    format: Literal["evopop-agent"]
    format_version: Literal[1]
    spec: dict[str, Any]
    params: dict[str, Any]
    observation_space: SpaceModel
    action_space: SpaceModel
    optimizer_groups: list[dict[str, Any]] = Field(max_length=1)
    extra: dict[str, Any]


def _scalars(model: BaseModel, depth: int = 0) -> int:
    """Scalars of a validated space model; checks Box bounds and nesting on the way."""
    if depth > MAX_SPACE_DEPTH:
        raise ValueError(f"spaces nested deeper than {MAX_SPACE_DEPTH}")
    if isinstance(model, DictSpace | TupleSpace):
        subs = model.spaces.values() if isinstance(model, DictSpace) else model.spaces
        return sum(_scalars(sub, depth + 1) for sub in subs)
    if isinstance(model, BoxSpace):
        size = math.prod(model.shape)
        if size > MAX_SPACE_SIZE:
            raise ValueError(f"a Box of shape {model.shape} has more than {MAX_SPACE_SIZE} values")
        for name in ("low", "high"):
            bound = np.asarray(getattr(model, name), dtype=np.float64)
            if bound.shape != tuple(model.shape) or np.isnan(bound).any():
                raise ValueError(f"Box {name} must be {model.shape} numbers, got shape "
                                 f"{list(bound.shape)}")
        return size
    if isinstance(model, MultiDiscreteSpace):
        if len(model.nvec) != len(model.start):
            raise ValueError("MultiDiscrete nvec and start differ in length")
        return int(sum(model.nvec))
    if isinstance(model, MultiBinarySpace):
        n = model.n if isinstance(model.n, int) else math.prod(model.n)
        if n > MAX_SPACE_SIZE:
            raise ValueError(f"a MultiBinary of {n} values is larger than {MAX_SPACE_SIZE}")
        return n
    return model.n  # Discrete: its one-hot width


_ADAPTERS = {cls: TypeAdapter(cls) for cls in (NetSpec, PPOParams)}
"""Built once: every agent bytes exchange (workers, clones, files) validates a header."""


def _dataclass(cls: type, data: dict[str, Any], what: str) -> Any:
    """A spec dataclass from JSON: known fields only, exact types, its own range checks."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what} has unknown keys {unknown}")
    return _ADAPTERS[cls].validate_json(json.dumps(data), strict=True)


def _describe(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(error)


def validate_header(meta: Any, source: str) -> tuple[NetSpec, PPOParams]:
    """The file's spec and params, once every part of its header has been checked."""
    try:
        header = AgentHeader.model_validate(meta)
        for space in (header.observation_space, header.action_space):
            _scalars(space)
        spec = _dataclass(NetSpec, header.spec, "spec")
        params = _dataclass(PPOParams, header.params, "params")
    except (ValidationError, ValueError, TypeError) as error:
        message = f"{source}: malformed agent header ({_describe(error)})"
        raise AgentFileError(one_line(message)) from None
    return spec, params


def check_weights(spec: NetSpec, observation: spaces.Space, action: spaces.Space,
                  tensors: dict[str, torch.Tensor], source: str) -> None:
    """The spec must account for exactly the network weights the file carries."""
    expected = parameter_count(spec, ObsEncoder(observation).dim, ActionSpec.from_space(action))
    carried = sum(t.numel() for k, t in tensors.items() if k.startswith("net."))
    if carried != expected:
        raise AgentFileError(f"{source}: its spec implies {expected} network weights but the "
                             f"file carries {carried}")


ADAM_SLOTS = frozenset({"step", "exp_avg", "exp_avg_sq"})
"""Adam's per-parameter state (evopop's Adam never uses amsgrad)."""
_ADAM_KEY = re.compile(r"optim\.(\d{1,4})\.(\w+)")


def check_state(agent: Agent, tensors: dict[str, torch.Tensor],
                optimizer_groups: list[dict[str, Any]], source: str) -> None:
    """The carried tensors must be exactly state this agent has, of its shapes: network
    weights, complete and finite normaliser statistics, and Adam state (step, exp_avg,
    exp_avg_sq per parameter) with settings of the agent's own Adam; else a loaded agent would
    fail (or go wrong) at its first update."""
    try:
        _check_norms(agent, tensors)
        slots = _adam_slots(agent, tensors)
        if slots:
            _check_adam_groups(agent, optimizer_groups)
    except ValueError as error:
        raise AgentFileError(one_line(f"{source}: {error}")) from None


def _check_norms(agent: Agent, tensors: dict[str, torch.Tensor]) -> None:
    for name, norm in (("obs_norm", agent.obs_norm), ("reward_norm", agent.reward_scaler)):
        carried = {k for k in tensors if k.startswith(f"{name}.")}
        if not carried:
            continue
        if norm is None:
            raise ValueError(f"it carries {name} statistics its params do not normalise with")
        state = norm.rms.state()
        if carried != {f"{name}.{k}" for k in state}:
            raise ValueError(f"its {name} statistics must be exactly {sorted(state)}")
        for key, value in state.items():
            tensor = tensors[f"{name}.{key}"]
            if tuple(tensor.shape) != np.shape(value) or not torch.isfinite(tensor).all():
                raise ValueError(f"{name}.{key} must be {list(np.shape(value))} finite numbers")
            if key != "mean" and (tensor < 0).any():
                raise ValueError(f"{name}.{key} must not be negative")


def _adam_slots(agent: Agent, tensors: dict[str, torch.Tensor]) -> dict[int, set[str]]:
    """Adam's slots per parameter index, once every `optim.` tensor has been checked."""
    params = list(agent.net.parameters())
    slots: dict[int, set[str]] = {}
    for key, tensor in tensors.items():
        if key.startswith(("net.", "obs_norm.", "reward_norm.")):
            continue
        match = _ADAM_KEY.fullmatch(key)
        if match is None or match[2] not in ADAM_SLOTS or int(match[1]) >= len(params):
            raise ValueError(f"it carries an unknown tensor {key[:60]!r}")
        index, slot = int(match[1]), match[2]
        param = params[index]
        shape = () if slot == "step" else tuple(param.shape)
        if tuple(tensor.shape) != shape or tensor.dtype != param.dtype \
                or not torch.isfinite(tensor).all():
            raise ValueError(f"{key} must be {list(shape)} finite {param.dtype} numbers")
        slots.setdefault(index, set()).add(slot)
    partial = sorted(i for i, found in slots.items() if found != ADAM_SLOTS)
    if partial:
        raise ValueError(f"Adam state of parameter {partial[0]} is not {sorted(ADAM_SLOTS)}")
    return slots


def _check_adam_groups(agent: Agent, groups: list[dict[str, Any]]) -> None:
    """One group: betas, eps and weight_decay in range; any other key one of this torch's
    Adam options, set as evopop's Adam sets it (a file from an older torch may lack some)."""
    fresh = {k: v for k, v in agent.optimizer.param_groups[0].items() if k not in ("params", "lr")}
    if len(groups) != 1:
        raise ValueError("optimizer_groups must be one group")
    group = groups[0]
    unknown = sorted(set(group) - set(fresh))
    if unknown or not {"betas", "eps", "weight_decay"} <= set(group):
        raise ValueError(f"optimizer settings must be betas, eps, weight_decay and some of "
                         f"{sorted(set(fresh) - {'betas', 'eps', 'weight_decay'})}")
    betas = group["betas"]
    if not (isinstance(betas, list) and len(betas) == 2
            and all(_number(b) and 0 <= b < 1 for b in betas)):
        raise ValueError("optimizer betas must be two numbers in [0, 1)")
    if not (_number(group["eps"]) and group["eps"] > 0):
        raise ValueError("optimizer eps must be a positive number")
    if not (_number(group["weight_decay"]) and group["weight_decay"] >= 0):
        raise ValueError("optimizer weight_decay must be a number >= 0")
    flags = sorted(k for k, v in group.items()
                   if k not in ("betas", "eps", "weight_decay") and v != fresh[k])
    if flags:
        raise ValueError(f"optimizer settings {flags} differ from evopop's Adam")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)
