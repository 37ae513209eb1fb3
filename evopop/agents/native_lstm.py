"""`lstm_native`: one LSTM layer of every member through the C loops (`evopop.agents.native`).

Both learners use it for sequences: the batched one for a stack of members
(`evopop.batched.cells`), a single agent as a stack of one (`evopop.agents.networks`).

The split: the recurrence (each step's `h W_hh^T` and the gate arithmetic, forward and
backward) runs in C for all members in one call; what spans all steps stays a torch batched
matmul at full speed: the input projection `x W_ih^T` before, and after the backward the
weight and bias gradients as one product of the gate gradients with `[h_{t-1}, x_t, 1]`.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from evopop.agents.native import library

Tensor = torch.Tensor


@dataclass(frozen=True)
class StepWeights:
    """An LSTM layer's weights as the C loops read them, copies taken at one moment: W_ih and
    W_hh transposed (`[P, in, 4H]`, `[P, H, 4H]`, contiguous), the two biases summed
    (`[P, 1, 4H]`). Made per sequence call, or once for the many single steps of a rollout
    (`lstm_native_step`), whose own copy of W_hh would cost as much as the step."""

    w_ih_t: Tensor
    w_hh_t: Tensor
    bias: Tensor

    @classmethod
    @torch.no_grad()
    def of(cls, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> StepWeights:
        return cls(w_ih.transpose(1, 2).contiguous(), w_hh.transpose(1, 2).contiguous(),
                   (b_ih + b_hh).unsqueeze(1))


def lstm_native_step(x: Tensor, h: Tensor, c: Tensor,
                     weights: StepWeights) -> tuple[Tensor, Tensor]:
    """One step of one LSTM layer of every member, without gradients (none flow back through
    it): `x [P, B, in]` from `h, c [P, B, H]` -> (h, c), the weights prepared once for many
    steps. 1.5-2.0x faster than the stacked cells' dozen ops per step for 1-16 members of 16
    envs (benchmarks/recurrent_step.py, RESULTS.md)."""
    _check_step(x, h, c, weights)
    out, cs, _ = _forward(x.unsqueeze(1), h, c, weights)
    return out[:, 0], cs[:, 0]


def lstm_native(
    x: Tensor, h: Tensor, c: Tensor,
    w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer over `x [P, L, B, in]` from `h, c [P, B, H]` -> (out `[P, L, B, H]`,
    h, c), as `evopop.batched.cells.lstm_layer` (torch's equations and gate order)."""
    inputs = (x, h, c, w_ih, w_hh, b_ih, b_hh)
    _check(*inputs)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _NativeLSTM.apply(*inputs)
    out, cs, _ = _forward(x, h, c, StepWeights.of(w_ih, w_hh, b_ih, b_hh))
    return out, out[:, -1].clone(), cs[:, -1].clone()  # not views keeping every step alive


def _check(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
           b_hh: Tensor) -> None:
    """The C loops trust their pointers: every shape and dtype is checked here, as torch's
    own LSTM checks them."""
    p, _, batch, width = x.shape
    gates, hidden = w_hh.shape[1:]
    want = {"x": (x, tuple(x.shape)), "h": (h, (p, batch, hidden)), "c": (c, (p, batch, hidden)),
            "w_ih": (w_ih, (p, gates, width)), "w_hh": (w_hh, (p, 4 * hidden, hidden)),
            "b_ih": (b_ih, (p, gates)), "b_hh": (b_hh, (p, gates))}
    for name, (tensor, shape) in want.items():
        if tuple(tensor.shape) != shape or tensor.dtype != torch.float32 \
                or tensor.device.type != "cpu":
            raise ValueError(f"lstm_native: {name} is {tuple(tensor.shape)} {tensor.dtype} "
                             f"on {tensor.device}, wants {shape} float32 on the CPU")


def _check_step(x: Tensor, h: Tensor, c: Tensor, w: StepWeights) -> None:
    """`_check` for a step on prepared weights, in a few comparisons: it runs every step."""
    p, batch, width = x.shape
    gates = w.w_hh_t.shape[-1]
    want = [(x, (p, batch, width)), (h, (p, batch, gates // 4)), (c, (p, batch, gates // 4)),
            (w.w_ih_t, (p, width, gates)), (w.w_hh_t, (p, gates // 4, gates)),
            (w.bias, (p, 1, gates))]
    if gates % 4 or any(t.shape != shape or t.dtype != torch.float32 or t.device.type != "cpu"
                        for t, shape in want):
        raise ValueError(f"lstm_native_step: shapes {[tuple(t.shape) for t, _ in want]} "
                         f"(x, h, c, w_ih^T, w_hh^T, bias) do not fit one LSTM layer of "
                         f"float32 CPU tensors")


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _forward(x: Tensor, h: Tensor, c: Tensor,
             weights: StepWeights) -> tuple[Tensor, Tensor, Tensor]:
    """(out, c_t for every step, the gates after their nonlinearities), all `[P, L, B, ...]`."""
    p, length, batch, width = x.shape
    hidden = h.shape[-1]
    if not weights.w_hh_t.is_contiguous():
        raise ValueError("lstm_native: StepWeights.w_hh_t must be contiguous (StepWeights.of)")
    with torch.no_grad():
        gx = torch.baddbmm(weights.bias, x.reshape(p, length * batch, width),
                           weights.w_ih_t)  # [P, L*B, 4H]: every step's input at once
        h0, c0 = h.contiguous(), c.contiguous()
        out = x.new_empty(p, length, batch, hidden)
        cs = torch.empty_like(out)
        acts = x.new_empty(p, length, batch, 4 * hidden)
        library().ep_lstm_forward(p, length, batch, hidden, _ptr(gx), _ptr(weights.w_hh_t),
                                  _ptr(h0), _ptr(c0), _ptr(out), _ptr(cs), _ptr(acts))
    return out, cs, acts


class _NativeLSTM(torch.autograd.Function):
    """The C loops under autograd: the backward runs the recurrence back in C, then forms the
    weight gradients as batched matmuls."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor,
                b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, cs, acts = _forward(x, h, c, StepWeights.of(w_ih, w_hh, b_ih, b_hh))
        ctx.save_for_backward(x, h, c, w_ih, w_hh, out, cs, acts)
        # h_n and c_n as copies: outputs that are views of other outputs or of saved tensors
        # would forbid in-place use downstream
        return out, out[:, -1].clone(), cs[:, -1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_out: Tensor, d_hn: Tensor,
                 d_cn: Tensor) -> tuple[Tensor | None, ...]:
        x, h, c, w_ih, w_hh, out, cs, acts = ctx.saved_tensors
        p, length, batch, width = x.shape
        hidden = h.shape[-1]
        d_gates = x.new_empty(p, length * batch, 4 * hidden)
        d_h0, d_c0 = torch.empty_like(out[:, 0]), torch.empty_like(out[:, 0])
        d_out, d_hn, d_cn = d_out.contiguous(), d_hn.contiguous(), d_cn.contiguous()
        w, c0 = w_hh.contiguous(), c.contiguous()
        work = x.new_empty(3 * batch * hidden)
        library().ep_lstm_backward(p, length, batch, hidden, _ptr(w), _ptr(c0), _ptr(cs),
                                   _ptr(acts), _ptr(d_out), _ptr(d_hn), _ptr(d_cn),
                                   _ptr(d_gates), _ptr(d_h0), _ptr(d_c0), _ptr(work))
        rows = torch.cat((torch.cat((h.unsqueeze(1), out[:, :-1]), 1), x,
                          x.new_ones(p, length, batch, 1)), -1)  # [h_{t-1}, x_t, 1]
        # [P, H + in + 1, 4H]^T: this orientation of the product ran faster
        grads = torch.bmm(rows.reshape(p, length * batch, -1).transpose(1, 2),
                          d_gates).transpose(1, 2)
        need = ctx.needs_input_grad
        d_x = torch.bmm(d_gates, w_ih).view(p, length, batch, width) if need[0] else None
        d_b = grads[..., hidden + width]
        # each bias its own tensor: shared, in-place clipping would scale it twice
        return (d_x, d_h0 if need[1] else None, d_c0 if need[2] else None,
                grads[..., hidden:hidden + width], grads[..., :hidden], d_b, d_b.clone())
