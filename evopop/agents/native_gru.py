"""`gru_native`: one GRU layer of every member through the C loops (`evopop.agents.native`).

The GRU counterpart of `evopop.agents.native_lstm`, with the same split: the recurrence (each
step's `h W_hh^T + b_hh` and the gate arithmetic, forward and backward) runs in C for all
members in one call; the input projection `x W_ih^T + b_ih` before it, and the weight and bias
gradients after the backward, stay torch batched matmuls over all steps. Unlike the LSTM's, the
two biases cannot be summed (torch's n gate scales `W_hn h + b_hn` by r), so the backward
returns one gradient for the input side and one for the hidden side.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from evopop.agents.native import library

Tensor = torch.Tensor


def gru_native(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> tuple[Tensor, Tensor]:
    """One GRU layer over `x [P, L, B, in]` from `h [P, B, H]` -> (out `[P, L, B, H]`, h), as
    `evopop.batched.cells.gru_layer` (torch's equations and gate order r, z, n)."""
    inputs = (x, h, w_ih, w_hh, b_ih, b_hh)
    _check(*inputs)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _NativeGRU.apply(*inputs)
    out, _ = _forward(x, h, GRUStepWeights.of(w_ih, w_hh, b_ih, b_hh))
    return out, out[:, -1].clone()  # not a view keeping every step alive


@dataclass(frozen=True)
class GRUStepWeights:
    """A GRU layer's weights as the C loops read them, copies taken at one moment: W_ih and
    W_hh transposed (`[P, in, 3H]`, `[P, H, 3H]`, contiguous), b_ih (`[P, 1, 3H]`) and b_hh
    (`[P, 3H]`: apart, since r scales the hidden side). Made per sequence call, or once for
    the many single steps of a rollout (`gru_native_step`)."""

    w_ih_t: Tensor
    w_hh_t: Tensor
    b_ih: Tensor
    b_hh: Tensor

    @classmethod
    @torch.no_grad()
    def of(cls, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> GRUStepWeights:
        return cls(w_ih.transpose(1, 2).contiguous(), w_hh.transpose(1, 2).contiguous(),
                   b_ih.unsqueeze(1).clone(), b_hh.clone())


def gru_native_step(x: Tensor, h: Tensor, weights: GRUStepWeights) -> Tensor:
    """One step of one GRU layer of every member, without gradients (none flow back through
    it): `x [P, B, in]` from `h [P, B, H]` -> h, the weights prepared once for many steps (a
    group's collection and evaluation): 1.3-1.7x faster than the stacked cells' step for 1-16
    members of 16 envs (benchmarks/recurrent_step.py)."""
    w = weights
    p, batch, width = x.shape
    gates = w.w_hh_t.shape[-1]
    want = [(x, (p, batch, width)), (h, (p, batch, gates // 3)), (w.w_ih_t, (p, width, gates)),
            (w.w_hh_t, (p, gates // 3, gates)), (w.b_ih, (p, 1, gates)), (w.b_hh, (p, gates))]
    if gates % 3 or any(t.shape != shape or t.dtype != torch.float32 or t.device.type != "cpu"
                        for t, shape in want):
        raise ValueError(f"gru_native_step: shapes {[tuple(t.shape) for t, _ in want]} "
                         f"(x, h, w_ih^T, w_hh^T, b_ih, b_hh) do not fit one GRU layer of "
                         f"float32 CPU tensors")
    out, _ = _forward(x.unsqueeze(1), h, w)
    return out[:, 0]


def _check(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
           b_hh: Tensor) -> None:
    """The C loops trust their pointers: every shape and dtype is checked here."""
    p, _, batch, width = x.shape
    hidden = h.shape[-1]
    want = {"x": (x, tuple(x.shape)), "h": (h, (p, batch, hidden)),
            "w_ih": (w_ih, (p, 3 * hidden, width)), "w_hh": (w_hh, (p, 3 * hidden, hidden)),
            "b_ih": (b_ih, (p, 3 * hidden)), "b_hh": (b_hh, (p, 3 * hidden))}
    for name, (tensor, shape) in want.items():
        if tuple(tensor.shape) != shape or tensor.dtype != torch.float32 \
                or tensor.device.type != "cpu":
            raise ValueError(f"gru_native: {name} is {tuple(tensor.shape)} {tensor.dtype} "
                             f"on {tensor.device}, wants {shape} float32 on the CPU")


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _forward(x: Tensor, h: Tensor, weights: GRUStepWeights) -> tuple[Tensor, Tensor]:
    """(out `[P, L, B, H]`, per step r, z, n and `W_hn h + b_hn` `[P, L, B, 4H]`)."""
    p, length, batch, width = x.shape
    hidden = h.shape[-1]
    if not (weights.w_hh_t.is_contiguous() and weights.b_hh.is_contiguous()):
        raise ValueError("gru_native: GRUStepWeights' W_hh^T and b_hh must be contiguous "
                         "(GRUStepWeights.of)")
    with torch.no_grad():
        gx = torch.baddbmm(weights.b_ih, x.reshape(p, length * batch, width),
                           weights.w_ih_t)  # [P, L*B, 3H]: every step's input at once
        h0 = h.contiguous()
        out = x.new_empty(p, length, batch, hidden)
        acts = x.new_empty(p, length, batch, 4 * hidden)
        work = x.new_empty(batch * 3 * hidden)
        library().ep_gru_forward(p, length, batch, hidden, _ptr(gx), _ptr(weights.w_hh_t),
                                 _ptr(weights.b_hh), _ptr(h0), _ptr(out), _ptr(acts),
                                 _ptr(work))
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
                b_hh: Tensor) -> tuple[Tensor, Tensor]:
        out, acts = _forward(x, h, GRUStepWeights.of(w_ih, w_hh, b_ih, b_hh))
        ctx.save_for_backward(x, h, w_ih, w_hh, out, acts)
        return out, out[:, -1].clone()  # a copy: an output that views another forbids in-place

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_out: Tensor, d_hn: Tensor) -> tuple[Tensor | None, ...]:
        x, h, w_ih, w_hh, out, acts = ctx.saved_tensors
        p, length, batch, width = x.shape
        hidden = h.shape[-1]
        d_gx = x.new_empty(p, length * batch, 3 * hidden)
        d_gh = torch.empty_like(d_gx)
        d_h0 = torch.empty_like(out[:, 0])
        d_out, d_hn = d_out.contiguous(), d_hn.contiguous()
        w, h0 = w_hh.contiguous(), h.contiguous()
        work = x.new_empty(2 * batch * hidden)
        library().ep_gru_backward(p, length, batch, hidden, _ptr(w), _ptr(h0), _ptr(out),
                                  _ptr(acts), _ptr(d_out), _ptr(d_hn), _ptr(d_gx), _ptr(d_gh),
                                  _ptr(d_h0), _ptr(work))
        d_w_ih, d_b_ih = _weight_grads(_with_ones(x), d_gx)
        h_prev = torch.cat((h.unsqueeze(1), out[:, :-1]), 1)  # h_{t-1} for every step
        d_w_hh, d_b_hh = _weight_grads(_with_ones(h_prev), d_gh)
        need = ctx.needs_input_grad
        d_x = torch.bmm(d_gx, w_ih).view(p, length, batch, width) if need[0] else None
        return d_x, d_h0 if need[1] else None, d_w_ih, d_w_hh, d_b_ih, d_b_hh
