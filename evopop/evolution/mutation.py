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
from evopop.evolution.settings import MutationKind, MutationSettings


class ArchOp(str, Enum):
    """The size changes an ARCHITECTURE mutation chooses from."""

    ADD_NODES = "add_nodes"
    REMOVE_NODES = "remove_nodes"
    GROW_HIDDEN = "grow_hidden"
    SHRINK_HIDDEN = "shrink_hidden"


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
    agent: Agent, config: MutationSettings, rng: np.random.Generator, torch_gen: torch.Generator
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
    agent: Agent, config: MutationSettings, rng: np.random.Generator, torch_gen: torch.Generator
) -> MutationEvent:
    return MutationEvent(MutationKind.NONE, "none")


def _feasible_ops(agent: Agent, config: MutationSettings) -> dict[ArchOp, list[int]]:
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
    agent: Agent, config: MutationSettings, rng: np.random.Generator, torch_gen: torch.Generator
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
    agent: Agent, config: MutationSettings, rng: np.random.Generator, torch_gen: torch.Generator
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
    agent: Agent, config: MutationSettings, rng: np.random.Generator, torch_gen: torch.Generator
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
            noise = torch.randn(w.shape, generator=torch_gen, dtype=w.dtype)  # CPU stream
            w.add_(noise.to(w.device) * scale)
        after = math.sqrt(sum(float(w.pow(2).sum()) for w in weights))
    detail = f"gaussian noise on {len(weights)} weight tensors, sd {config.mutation_sd} x RMS"
    return MutationEvent(MutationKind.PARAMETERS, detail, before, after)


def _mutate_activation(
    agent: Agent, config: MutationSettings, rng: np.random.Generator, torch_gen: torch.Generator
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
    agent: Agent, config: MutationSettings, rng: np.random.Generator, torch_gen: torch.Generator
) -> MutationEvent:
    """Perturbs one hyperparameter of the space; an lr change keeps Adam's moments."""
    params, name, old, new = config.hp_space.mutate_params(
        agent.params, rng, factor=config.hp_factor)
    agent.set_params(params)
    return MutationEvent(MutationKind.HYPERPARAMETER, name, old, new)


_Mutation = Callable[[Agent, MutationSettings, np.random.Generator, torch.Generator], MutationEvent]

_APPLY: dict[MutationKind, _Mutation] = {
    MutationKind.NONE: _no_mutation,
    MutationKind.ARCHITECTURE: _mutate_architecture,
    MutationKind.NEW_LAYER: _mutate_new_layer,
    MutationKind.PARAMETERS: _mutate_parameters,
    MutationKind.ACTIVATION: _mutate_activation,
    MutationKind.HYPERPARAMETER: _mutate_hyperparameter,
}
