"""Mutations of one population member: architecture, new layer, weights, activation, one RL
hyperparameter. Each call applies exactly one and returns a `MutationEvent` for the lineage log.

All randomness comes from the `np.random.Generator` (choices, hyperparameters) and the
`torch.Generator` (new modules' init, weight noise) passed in, so one seed fixes the whole run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch

from evopop.agents.agent import Agent
from evopop.agents.spec import Activation
from evopop.evolution.space import DEFAULT_HP_SPACE, DEFAULT_PERTURB_FACTOR, HPSpace

ALL_ACTIVATIONS: tuple[Activation, ...] = tuple(Activation)


class MutationKind(str, Enum):
    """What a mutation changed; NONE also records a mutation that found nothing to change."""

    NONE = "none"
    ARCHITECTURE = "architecture"
    NEW_LAYER = "new_layer"
    PARAMETERS = "parameters"
    ACTIVATION = "activation"
    HYPERPARAMETER = "hyperparameter"


class ArchOp(str, Enum):
    """The size changes an ARCHITECTURE mutation chooses from."""

    ADD_NODES = "add_nodes"
    REMOVE_NODES = "remove_nodes"
    GROW_HIDDEN = "grow_hidden"
    SHRINK_HIDDEN = "shrink_hidden"


@dataclass(frozen=True)
class MutationConfig:
    """Mutation probabilities, noise scale, architecture limits and hyperparameter space.

    The six probabilities are relative weights: they are normalised by their sum and exactly one
    kind is drawn per member per generation (so `none=0.5, parameters=0.5` and `none=1,
    parameters=1` behave alike). Activation switches default to 0: a new nonlinearity changes the
    learned function wholesale, which rarely pays off in RL.
    """

    none: float = 0.4
    architecture: float = 0.2
    new_layer: float = 0.2
    parameters: float = 0.2
    activation: float = 0.0
    hyperparameter: float = 0.2
    mutation_sd: float = 0.1
    activations: tuple[Activation, ...] = ALL_ACTIVATIONS
    min_nodes: int = 8
    max_nodes: int = 512
    max_layers: int = 4
    min_hidden: int = 8
    max_hidden: int = 512
    node_steps: tuple[int, ...] = (16, 32, 64)
    hp_space: HPSpace = DEFAULT_HP_SPACE
    hp_factor: float = DEFAULT_PERTURB_FACTOR

    def __post_init__(self) -> None:
        weights = [getattr(self, kind.value) for kind in MutationKind]
        for kind, p in zip(MutationKind, weights, strict=True):
            if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
                raise ValueError(f"probability of {kind.value!r} must be in [0, 1], got {p!r}")
        if sum(weights) <= 0:
            raise ValueError("at least one mutation probability must be > 0")
        for name in ("mutation_sd", "hp_factor"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        object.__setattr__(self, "activations", tuple(Activation(a) for a in self.activations))
        object.__setattr__(self, "node_steps", tuple(self.node_steps))
        if not self.activations:
            raise ValueError("activations must list at least one Activation")
        if not self.node_steps or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.node_steps
        ):
            raise ValueError(f"node_steps must be positive integers, got {self.node_steps}")
        self._check_limits()
        if not isinstance(self.hp_space, HPSpace):
            raise ValueError("hp_space must be an HPSpace (see HPSpace.from_dict)")
        if self.hyperparameter > 0 and not self.hp_space:
            raise ValueError("hyperparameter mutations are enabled but hp_space is empty")

    def _check_limits(self) -> None:
        if not 1 <= self.min_nodes <= self.max_nodes:
            raise ValueError(f"need 1 <= min_nodes <= max_nodes, got "
                             f"{self.min_nodes}..{self.max_nodes}")
        if not 1 <= self.min_hidden <= self.max_hidden:
            raise ValueError(f"need 1 <= min_hidden <= max_hidden, got "
                             f"{self.min_hidden}..{self.max_hidden}")
        if self.max_layers < 1:
            raise ValueError(f"max_layers must be >= 1, got {self.max_layers}")

    def probabilities(self) -> np.ndarray:
        """Normalised probability of each `MutationKind`, in enum order."""
        weights = np.array([getattr(self, kind.value) for kind in MutationKind], np.float64)
        return weights / weights.sum()


@dataclass(frozen=True)
class MutationEvent:
    """One applied mutation: its kind, what changed (`detail`) and the value before and after."""

    kind: MutationKind
    detail: str
    old: Any = None
    new: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for lineage logs."""
        return {"kind": self.kind.value, "detail": self.detail,
                "old": _plain(self.old), "new": _plain(self.new)}


def _plain(value: Any) -> Any:
    """Enums, tuples and numpy scalars as JSON types."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def mutate(
    agent: Agent, config: MutationConfig, rng: np.random.Generator, torch_gen: torch.Generator
) -> MutationEvent:
    """Draws one mutation kind by `config`'s probabilities and applies it to `agent` in place."""
    kinds = list(MutationKind)
    kind = kinds[int(rng.choice(len(kinds), p=config.probabilities()))]
    return _APPLY[kind](agent, config, rng, torch_gen)


def _skipped(kind: MutationKind, reason: str) -> MutationEvent:
    return MutationEvent(MutationKind.NONE, f"{kind.value} skipped: {reason}")


def _pick(items: list[Any], rng: np.random.Generator) -> Any:
    return items[int(rng.integers(len(items)))]


def _clip(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


def _no_mutation(
    agent: Agent, config: MutationConfig, rng: np.random.Generator, torch_gen: torch.Generator
) -> MutationEvent:
    return MutationEvent(MutationKind.NONE, "none")


def _feasible_ops(agent: Agent, config: MutationConfig) -> dict[ArchOp, list[int]]:
    """Each size change still possible within the limits -> the head layers it can apply to
    (`[-1]` stands for the recurrent hidden size)."""
    head = agent.spec.head
    ops = {
        ArchOp.ADD_NODES: [i for i, n in enumerate(head) if n < config.max_nodes],
        ArchOp.REMOVE_NODES: [i for i, n in enumerate(head) if n > config.min_nodes],
    }
    if agent.spec.recurrent:
        hidden = agent.spec.hidden_size
        ops[ArchOp.GROW_HIDDEN] = [-1] if hidden < config.max_hidden else []
        ops[ArchOp.SHRINK_HIDDEN] = [-1] if hidden > config.min_hidden else []
    return {op: layers for op, layers in ops.items() if layers}


def _mutate_architecture(
    agent: Agent, config: MutationConfig, rng: np.random.Generator, torch_gen: torch.Generator
) -> MutationEvent:
    """Adds or removes nodes of one head layer, or grows or shrinks the recurrent hidden size."""
    ops = _feasible_ops(agent, config)
    if not ops:
        return _skipped(MutationKind.ARCHITECTURE, "no size change possible within the limits")
    op = _pick(list(ops), rng)
    layer = _pick(ops[op], rng)
    step = int(_pick(list(config.node_steps), rng))
    spec = agent.spec
    if op in (ArchOp.ADD_NODES, ArchOp.REMOVE_NODES):
        old = spec.head[layer]
        sign = 1 if op is ArchOp.ADD_NODES else -1
        new = _clip(old + sign * step, config.min_nodes, config.max_nodes)
        head = (*spec.head[:layer], new, *spec.head[layer + 1 :])
        new_spec, detail = dataclasses.replace(spec, head=head), f"head[{layer}]"
    else:
        old = spec.hidden_size
        sign = 1 if op is ArchOp.GROW_HIDDEN else -1
        new = _clip(old + sign * step, config.min_hidden, config.max_hidden)
        new_spec, detail = dataclasses.replace(spec, hidden_size=new), "hidden_size"
    agent.set_spec(new_spec, torch_gen)
    return MutationEvent(MutationKind.ARCHITECTURE, f"{op.value} {detail}", old, new)


def _mutate_new_layer(
    agent: Agent, config: MutationConfig, rng: np.random.Generator, torch_gen: torch.Generator
) -> MutationEvent:
    """Appends a head layer as wide as the one before it, which transfer starts as the identity
    (function-preserving for ReLU heads; see `evopop.agents.transfer`)."""
    spec = agent.spec
    if len(spec.head) >= config.max_layers:
        return _skipped(MutationKind.NEW_LAYER, f"head already has {config.max_layers} layers")
    size = _clip(agent.net.pi.in_features, config.min_nodes, config.max_nodes)
    new_head = (*spec.head, size)
    agent.set_spec(dataclasses.replace(spec, head=new_head), torch_gen)
    return MutationEvent(MutationKind.NEW_LAYER, "head", spec.head, new_head)


def _mutate_parameters(
    agent: Agent, config: MutationConfig, rng: np.random.Generator, torch_gen: torch.Generator
) -> MutationEvent:
    """Adds N(0, (mutation_sd x RMS(W))^2) noise to every weight matrix W, in place.

    Scaling by each tensor's own RMS makes the noise relative: the small-gain policy output layer
    is perturbed as much, proportionally, as the hidden layers. Biases (zero-initialised) and
    `log_std` are left alone; the optimizer keeps its parameters and moments.
    """
    weights = [p for p in agent.net.parameters()
               if p.dim() >= 2 and p is not agent.net.log_std]
    with torch.no_grad():
        before = math.sqrt(sum(float(w.pow(2).sum()) for w in weights))
        for w in weights:
            scale = config.mutation_sd * w.pow(2).mean().sqrt()
            w.add_(torch.randn(w.shape, generator=torch_gen, dtype=w.dtype) * scale)
        after = math.sqrt(sum(float(w.pow(2).sum()) for w in weights))
    detail = f"gaussian noise on {len(weights)} weight tensors, sd {config.mutation_sd} x RMS"
    return MutationEvent(MutationKind.PARAMETERS, detail, before, after)


def _mutate_activation(
    agent: Agent, config: MutationConfig, rng: np.random.Generator, torch_gen: torch.Generator
) -> MutationEvent:
    """Switches the head activation to another allowed one; all weights carry over unchanged."""
    old = agent.spec.activation
    choices = [a for a in config.activations if a is not old]
    if not choices:
        return _skipped(MutationKind.ACTIVATION, "no other activation allowed")
    new = _pick(choices, rng)
    agent.set_spec(dataclasses.replace(agent.spec, activation=new), torch_gen)
    return MutationEvent(MutationKind.ACTIVATION, "activation", old, new)


def _mutate_hyperparameter(
    agent: Agent, config: MutationConfig, rng: np.random.Generator, torch_gen: torch.Generator
) -> MutationEvent:
    """Perturbs one hyperparameter of the space; an lr change keeps Adam's moments."""
    params, name, old, new = config.hp_space.mutate_params(
        agent.params, rng, factor=config.hp_factor)
    agent.set_params(params)
    return MutationEvent(MutationKind.HYPERPARAMETER, name, old, new)


_Mutation = Callable[[Agent, MutationConfig, np.random.Generator, torch.Generator], MutationEvent]

_APPLY: dict[MutationKind, _Mutation] = {
    MutationKind.NONE: _no_mutation,
    MutationKind.ARCHITECTURE: _mutate_architecture,
    MutationKind.NEW_LAYER: _mutate_new_layer,
    MutationKind.PARAMETERS: _mutate_parameters,
    MutationKind.ACTIVATION: _mutate_activation,
    MutationKind.HYPERPARAMETER: _mutate_hyperparameter,
}
