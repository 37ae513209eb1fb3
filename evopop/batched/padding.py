"""Members of different widths in one stack: each padded to the group's largest with zero units.

An architecture mutation (a hidden size, a head layer's width) would otherwise split a
population into groups of one, which train one by one. A padded unit stays exactly zero: its
weights and biases are zero, so its pre-activation is 0, and every activation evopop offers
maps 0 to 0 (an LSTM's cell `f c + i tanh(0)` and a GRU's `(1 - z) tanh(0) + z h` stay 0 from a
zero state). Its outgoing weights are zero too, so the gradient reaching it is zero, and so is
every padded weight's gradient (each is a product with a zero unit or a zero gradient): Adam
leaves them at zero, and a member cropped back out of the stack is the member trained on its
own, up to the float rounding of a longer gradient norm. A recurrent weight's rows hold one
block per gate (`[gates * H, ...]`), each padded on its own.

Padding costs arithmetic: a member computes at the group's widths. Below `PAD_MAX_WIDTH` small
recurrent nets are bound by per-op overhead rather than arithmetic, so the stack is cheaper
than the members one by one; wider nets stack only with members of their own widths. gSDE's
exploration matrices are drawn at the member's own feature width, so gSDE members never pad.
"""

from __future__ import annotations

import dataclasses

import torch

from evopop.agents.spec import CellType, NetSpec

PAD_MAX_WIDTH = 256
"""The widest hidden size or head layer that pads to another member's widths."""

PAD_MAX_WASTE = 4.0
"""The most recurrent arithmetic a padded group may do over its members' own (P H_max^2 over
sum H^2): benchmarks/padded_group.py (2026-12-07, one W1 rollout and update per member) took
hidden sizes (64, 8) (2.0x the arithmetic) and (128, 64) (1.6x) 0.79x and 0.91x the time of
stacking each width apart, but (128, 16 x 7) (7.3x) 2.37x and (256, 16 x 7) (7.8x) 4.87x."""

_GATES = {CellType.LSTM: 4, CellType.GRU: 3}
_GATED = (".weight_ih", ".weight_hh", ".bias_ih", ".bias_hh")  # nn.LSTM / nn.GRU names


def pads(spec: NetSpec) -> bool:
    """Whether members of this spec stack with members of other widths."""
    return not spec.sde and max(spec.hidden_size, *spec.head, 0) <= PAD_MAX_WIDTH


def width_free(spec: NetSpec) -> NetSpec:
    """What must be equal, apart from widths, for two specs to stack: the spec with its widths
    set to 1 where it pads, else the spec itself."""
    if not pads(spec):
        return spec
    return dataclasses.replace(spec, hidden_size=1, head=(1,) * len(spec.head))


def widest(specs: list[NetSpec]) -> NetSpec:
    """The spec a stack of these (`width_free`-equal) specs computes at."""
    return dataclasses.replace(specs[0], hidden_size=max(s.hidden_size for s in specs),
                               head=tuple(max(layer) for layer in zip(*(s.head for s in specs),
                                                                       strict=True)))


def split_by_cost(members: list[int], hidden: list[int]) -> list[list[int]]:
    """`members` (indices, with their recurrent hidden sizes) cut, narrowest first, into
    groups whose padding costs at most `PAD_MAX_WASTE` times their own recurrent arithmetic (a
    wider member joins while the group, padded to it, stays under that); each group in index
    order, the groups in order of their first member."""
    order = sorted(range(len(members)), key=lambda j: (hidden[j], members[j]))
    groups: list[list[int]] = []
    own = 0
    for j in order:
        square = hidden[j] ** 2  # the widest yet: members come narrowest first
        if groups and (len(groups[-1]) + 1) * square <= PAD_MAX_WASTE * (own + square):
            groups[-1].append(members[j])
            own += square
        else:
            groups.append([members[j]])
            own = square
    return sorted((sorted(g) for g in groups), key=lambda g: g[0])


def gate_blocks(name: str, spec: NetSpec) -> int:
    """How many gate blocks a parameter's first dimension holds (1 outside recurrent cells)."""
    return _GATES.get(spec.cell, 1) if any(g in name for g in _GATED) else 1


def _region(padded: torch.Tensor, shape: tuple[int, ...], blocks: int) -> torch.Tensor:
    """The view of `padded` that holds a member parameter of `shape`."""
    if blocks == 1:
        return padded[tuple(slice(0, n) for n in shape)]
    rows = padded.view(blocks, padded.shape[0] // blocks, *padded.shape[1:])
    return rows[(slice(None), slice(0, shape[0] // blocks), *(slice(0, n) for n in shape[1:]))]


def place(padded: torch.Tensor, member: torch.Tensor, blocks: int) -> None:
    """Copies a member's parameter into the zeroed `padded` (its shape in the stack)."""
    shape = tuple(member.shape)
    if shape == tuple(padded.shape):
        padded.copy_(member)
        return
    _region(padded, shape, blocks).copy_(member.view(
        *((blocks, shape[0] // blocks) if blocks > 1 else (shape[0],)), *shape[1:]))


def crop(padded: torch.Tensor, shape: tuple[int, ...], blocks: int) -> torch.Tensor:
    """A member's parameter of `shape` out of its padded stack slice (a copy when padded)."""
    if shape == tuple(padded.shape):
        return padded
    return _region(padded, shape, blocks).reshape(shape)
