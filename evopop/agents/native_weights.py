"""What the LSTM's and GRU's C loops share on the Python side: a layer's weights in the layout
the loops read (`StepWeights`), the one check of every tensor they will be handed
(`check_layer`: the loops trust their pointers), and the pointer itself."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


def pointer(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


@dataclass(frozen=True)
class StepWeights:
    """One layer's weights for P members as the C loops read them, copies taken at one moment:
    W_ih and W_hh transposed (`[P, in, G]`, `[P, H, G]`, contiguous), the input side's bias
    `b_x` (`[P, 1, G]`, added to `x W_ih^T`) and the hidden side's `b_h` (`[P, G]`, a GRU's
    b_hh, which its r gate scales; an LSTM's two biases are summed into `b_x`, so it has none).
    Made per sequence call, or once for the many single steps of a rollout, whose own copy of
    W_hh would cost as much as the step."""

    w_ih_t: Tensor
    w_hh_t: Tensor
    b_x: Tensor
    b_h: Tensor | None

    @classmethod
    @torch.no_grad()
    def lstm(cls, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> StepWeights:
        if b_ih.shape != b_hh.shape:
            raise ValueError(f"lstm_native: biases {tuple(b_ih.shape)} and "
                             f"{tuple(b_hh.shape)} differ")
        return cls(*_transposed(w_ih, w_hh), (b_ih + b_hh).unsqueeze(1), None)

    @classmethod
    @torch.no_grad()
    def gru(cls, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> StepWeights:
        return cls(*_transposed(w_ih, w_hh), b_ih.unsqueeze(1).clone(), b_hh.clone())


def _transposed(w_ih: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor]:
    return w_ih.transpose(1, 2).contiguous(), w_hh.transpose(1, 2).contiguous()


def check_layer(fn: str, x: Tensor, states: dict[str, Tensor], weights: StepWeights,
                gates_per_unit: int) -> None:
    """Refuses, before any C call, what does not fit one layer: `x [P, L, B, in]`, each state
    `[P, B, H]`, `weights` of G = `gates_per_unit` x H gates (4 for an LSTM, 3 for a GRU), all
    float32 on the CPU, the parts the loops index contiguous. Runs at every step of a
    rollout: a few comparisons."""
    w = weights
    p, length, batch, width = x.shape
    gates = w.w_hh_t.shape[-1]
    hidden = gates // gates_per_unit
    want = {"x": (x, (p, length, batch, width)),
            **{name: (state, (p, batch, hidden)) for name, state in states.items()},
            "w_ih^T": (w.w_ih_t, (p, width, gates)), "w_hh^T": (w.w_hh_t, (p, hidden, gates)),
            "b_x": (w.b_x, (p, 1, gates))}
    if w.b_h is not None:
        want["b_h"] = (w.b_h, (p, gates))
    for name, (tensor, shape) in want.items():
        if tensor.shape != shape or tensor.dtype != torch.float32 \
                or tensor.device.type != "cpu":
            raise ValueError(f"{fn}: {name} is {tuple(tensor.shape)} {tensor.dtype} on "
                             f"{tensor.device}, wants {shape} float32 on the CPU")
    if gates % gates_per_unit or not w.w_hh_t.is_contiguous() or \
            (w.b_h is not None and not w.b_h.is_contiguous()):
        raise ValueError(f"{fn}: {gates} gates is not {gates_per_unit} x H, or the weights "
                         f"were not prepared by StepWeights")
