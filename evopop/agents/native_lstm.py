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
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from evopop.agents.native import library

Tensor = torch.Tensor

NATIVE_MIN_STEPS = 2
"""Sequences of at least this many steps run through the C loops where they are built: forward
and backward 1.08-1.44x faster than torch's LSTM (oneDNN) at every member count (1, 8, 16) and
length (2, 4, 16) measured, one member included (benchmarks/lstm_paths.py, RESULTS.md). A
single step (collection, evaluation) stays with torch: a stack's one batched matmul beat the
loops from 8 members on, and a single agent's fused cell op is the path export and inference
share."""


def native_lstm_usable(x: Tensor, steps: int) -> bool:
    """Whether a sequence of `steps` steps of `x` goes through `lstm_native`: long enough
    (`NATIVE_MIN_STEPS`), float32 on the CPU, with the library built."""
    return (steps >= NATIVE_MIN_STEPS and x.device.type == "cpu" and x.dtype == torch.float32
            and library() is not None)


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
    out, cs, _ = _forward(*inputs)
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


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _forward(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
             b_hh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(out, c_t for every step, the gates after their nonlinearities), all `[P, L, B, ...]`."""
    p, length, batch, width = x.shape
    hidden = h.shape[-1]
    with torch.no_grad():
        gx = torch.baddbmm((b_ih + b_hh).unsqueeze(1), x.reshape(p, length * batch, width),
                           w_ih.transpose(1, 2))  # [P, L*B, 4H]: every step's input at once
        wt = w_hh.transpose(1, 2).contiguous()  # [P, H, 4H]
        h0, c0 = h.contiguous(), c.contiguous()
        out = x.new_empty(p, length, batch, hidden)
        cs = torch.empty_like(out)
        acts = x.new_empty(p, length, batch, 4 * hidden)
        library().ep_lstm_forward(p, length, batch, hidden, _ptr(gx), _ptr(wt), _ptr(h0),
                                  _ptr(c0), _ptr(out), _ptr(cs), _ptr(acts))
    return out, cs, acts


class _NativeLSTM(torch.autograd.Function):
    """The C loops under autograd: the backward runs the recurrence back in C, then forms the
    weight gradients as batched matmuls."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor,
                b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, cs, acts = _forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
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
