"""`lstm_native`: one LSTM layer of every member through the C loops (`evopop.agents.native`).

Both learners use it for sequences: the batched one for a stack of members
(`evopop.batched.cells`), a single agent as a stack of one (`evopop.agents.networks`).

The split: the recurrence (each step's `h W_hh^T` and the gate arithmetic, forward and
backward) runs in C for all members in one call; what spans all steps stays a torch batched
matmul at full speed: the input projection `x W_ih^T` before, and after the backward the
weight and bias gradients as one product of the gate gradients with `[h_{t-1}, x_t, 1]`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

from evopop.agents.native import library
from evopop.agents.native_weights import StepWeights, check_layer, pointer

Tensor = torch.Tensor
LSTM_GATES = 4  # i, f, g, o


def lstm_native_step(x: Tensor, h: Tensor, c: Tensor,
                     weights: StepWeights) -> tuple[Tensor, Tensor]:
    """One step of one LSTM layer of every member, without gradients (none flow back through
    it): `x [P, B, in]` from `h, c [P, B, H]` -> (h, c), the weights prepared once for many
    steps (`StepWeights.lstm`). 1.5-2.0x faster than the stacked cells' dozen ops per step
    for 1-16 members of 16 envs (benchmarks/recurrent_step.py, RESULTS.md)."""
    x = x.unsqueeze(1)
    check_layer("lstm_native_step", x, {"h": h, "c": c}, weights, LSTM_GATES)
    out, cs, _ = _forward(x, h, c, weights)
    return out[:, 0], cs[:, 0]


def lstm_native(
    x: Tensor, h: Tensor, c: Tensor,
    w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer over `x [P, L, B, in]` from `h, c [P, B, H]` -> (out `[P, L, B, H]`,
    h, c), as `evopop.batched.cells.lstm_layer` (torch's equations and gate order)."""
    weights = StepWeights.lstm(w_ih, w_hh, b_ih, b_hh)
    check_layer("lstm_native", x, {"h": h, "c": c}, weights, LSTM_GATES)
    inputs = (x, h, c, w_ih, w_hh, b_ih, b_hh)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _NativeLSTM.apply(*inputs, weights)
    out, cs, _ = _forward(x, h, c, weights)
    return out, out[:, -1].clone(), cs[:, -1].clone()  # not views keeping every step alive


def _forward(x: Tensor, h: Tensor, c: Tensor,
             weights: StepWeights) -> tuple[Tensor, Tensor, Tensor]:
    """(out, c_t for every step, the gates after their nonlinearities), all `[P, L, B, ...]`."""
    p, length, batch, width = x.shape
    hidden = h.shape[-1]
    with torch.no_grad():
        gx = torch.baddbmm(weights.b_x, x.reshape(p, length * batch, width),
                           weights.w_ih_t)  # [P, L*B, 4H]: every step's input at once
        h0, c0 = h.contiguous(), c.contiguous()
        out = x.new_empty(p, length, batch, hidden)
        cs = torch.empty_like(out)
        acts = x.new_empty(p, length, batch, LSTM_GATES * hidden)
        library().ep_lstm_forward(p, length, batch, hidden, pointer(gx),
                                  pointer(weights.w_hh_t), pointer(h0), pointer(c0),
                                  pointer(out), pointer(cs), pointer(acts))
    return out, cs, acts


class _NativeLSTM(torch.autograd.Function):
    """The C loops under autograd: the backward runs the recurrence back in C, then forms the
    weight gradients as batched matmuls."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor,
                b_ih: Tensor, b_hh: Tensor,
                weights: StepWeights) -> tuple[Tensor, Tensor, Tensor]:
        out, cs, acts = _forward(x, h, c, weights)
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
        d_gates = x.new_empty(p, length * batch, LSTM_GATES * hidden)
        d_h0, d_c0 = torch.empty_like(out[:, 0]), torch.empty_like(out[:, 0])
        d_out, d_hn, d_cn = d_out.contiguous(), d_hn.contiguous(), d_cn.contiguous()
        w, c0 = w_hh.contiguous(), c.contiguous()
        work = x.new_empty(3 * batch * hidden)
        library().ep_lstm_backward(p, length, batch, hidden, *map(pointer, (
            w, c0, cs, acts, d_out, d_hn, d_cn, d_gates, d_h0, d_c0, work)))
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
                grads[..., hidden:hidden + width], grads[..., :hidden], d_b, d_b.clone(), None)
