"""`gru_native`: one GRU layer of every member through the C loops (`evopop.agents.native`).

The GRU counterpart of `evopop.agents.native_lstm`, with the same split: the recurrence (each
step's `h W_hh^T + b_hh` and the gate arithmetic, forward and backward) runs in C for all
members in one call; the input projection `x W_ih^T + b_ih` before it, and the weight and bias
gradients after the backward, stay torch batched matmuls over all steps. Unlike the LSTM's, the
two biases cannot be summed (torch's n gate scales `W_hn h + b_hn` by r), so the backward
returns one gradient for the input side and one for the hidden side.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from evopop.agents.native import library
from evopop.agents.native_weights import StepWeights, check_layer, pointer

Tensor = torch.Tensor
GRU_GATES = 3  # r, z, n


def gru_native_step(x: Tensor, h: Tensor, weights: StepWeights) -> Tensor:
    """One step of one GRU layer of every member, without gradients (none flow back through
    it): `x [P, B, in]` from `h [P, B, H]` -> h, the weights prepared once for many steps
    (`StepWeights.gru`; a group's collection and evaluation): 1.3-1.7x faster than the
    stacked cells' step for 1-16 members of 16 envs (benchmarks/recurrent_step.py)."""
    x = x.unsqueeze(1)
    check_layer("gru_native_step", x, {"h": h}, weights, GRU_GATES)
    out, _ = _forward(x, h, weights)
    return out[:, 0]


def gru_native(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> tuple[Tensor, Tensor]:
    """One GRU layer over `x [P, L, B, in]` from `h [P, B, H]` -> (out `[P, L, B, H]`, h), as
    `evopop.batched.cells.gru_layer` (torch's equations and gate order r, z, n)."""
    weights = StepWeights.gru(w_ih, w_hh, b_ih, b_hh)
    check_layer("gru_native", x, {"h": h}, weights, GRU_GATES)
    inputs = (x, h, w_ih, w_hh, b_ih, b_hh)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _NativeGRU.apply(*inputs, weights)
    out, _ = _forward(x, h, weights)
    return out, out[:, -1].clone()  # not a view keeping every step alive


def _forward(x: Tensor, h: Tensor, weights: StepWeights) -> tuple[Tensor, Tensor]:
    """(out `[P, L, B, H]`, per step r, z, n and `W_hn h + b_hn` `[P, L, B, 4H]`)."""
    p, length, batch, width = x.shape
    hidden = h.shape[-1]
    with torch.no_grad():
        gx = torch.baddbmm(weights.b_x, x.reshape(p, length * batch, width),
                           weights.w_ih_t)  # [P, L*B, 3H]: every step's input at once
        h0 = h.contiguous()
        out = x.new_empty(p, length, batch, hidden)
        acts = x.new_empty(p, length, batch, (GRU_GATES + 1) * hidden)
        work = x.new_empty(batch * GRU_GATES * hidden)
        library().ep_gru_forward(p, length, batch, hidden, *map(pointer, (
            gx, weights.w_hh_t, weights.b_h, h0, out, acts, work)))
    return out, acts


def _with_ones(t: Tensor) -> Tensor:
    """`[P, L, B, k]` -> `[P, L*B, k + 1]`: a column of ones makes the bias gradient part of
    the weight gradient's product."""
    p, length, batch, _ = t.shape
    return torch.cat((t, t.new_ones(p, length, batch, 1)), -1).reshape(p, length * batch, -1)


def _weight_grads(rows: Tensor, d_gates: Tensor) -> tuple[Tensor, Tensor]:
    """(weight `[P, 3H, k]`, bias `[P, 3H]`) gradients from `rows [P, M, k + 1]` (ones last)
    and the gates' gradients `[P, M, 3H]`."""
    grads = torch.bmm(rows.transpose(1, 2), d_gates).transpose(1, 2)  # [P, 3H, k + 1]
    return grads[..., :-1], grads[..., -1]


class _NativeGRU(torch.autograd.Function):
    """The C loops under autograd: the backward runs the recurrence back in C, then forms the
    weight gradients as batched matmuls."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
                b_hh: Tensor, weights: StepWeights) -> tuple[Tensor, Tensor]:
        out, acts = _forward(x, h, weights)
        ctx.save_for_backward(x, h, w_ih, w_hh, out, acts)
        return out, out[:, -1].clone()  # a copy: an output that views another forbids in-place

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_out: Tensor, d_hn: Tensor) -> tuple[Tensor | None, ...]:
        x, h, w_ih, w_hh, out, acts = ctx.saved_tensors
        p, length, batch, width = x.shape
        hidden = h.shape[-1]
        d_gx = x.new_empty(p, length * batch, GRU_GATES * hidden)
        d_gh = torch.empty_like(d_gx)
        d_h0 = torch.empty_like(out[:, 0])
        d_out, d_hn = d_out.contiguous(), d_hn.contiguous()
        w, h0 = w_hh.contiguous(), h.contiguous()
        work = x.new_empty(2 * batch * hidden)
        library().ep_gru_backward(p, length, batch, hidden, *map(pointer, (
            w, h0, out, acts, d_out, d_hn, d_gx, d_gh, d_h0, work)))
        d_w_ih, d_b_ih = _weight_grads(_with_ones(x), d_gx)
        h_prev = torch.cat((h.unsqueeze(1), out[:, :-1]), 1)  # h_{t-1} for every step
        d_w_hh, d_b_hh = _weight_grads(_with_ones(h_prev), d_gh)
        need = ctx.needs_input_grad
        d_x = torch.bmm(d_gx, w_ih).view(p, length, batch, width) if need[0] else None
        return d_x, d_h0 if need[1] else None, d_w_ih, d_w_hh, d_b_ih, d_b_hh, None
