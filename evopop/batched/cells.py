"""Linear layers and LSTM/GRU layers over a leading member axis.

`nn.LSTM` and `nn.GRU` have no batching rule for a stack of weights, so the cells are spelled
out as batched matmuls with PyTorch's gate order and equations (LSTM i, f, g, o with
b_ih + b_hh; GRU r, z, n with `r * (W_hn h + b_hn)`). Tensors are member-major (`[P, L, B, ...]`)
so that folding the time and batch axes into one matmul dimension is a free view; only the
recurrent product runs per step. Over a sequence, C loops for all members at once are faster
still (`evopop.agents.native_lstm`, `native_gru`; see `lstm_layer`, `gru_layer`); without
them an LSTM runs each member through torch's own LSTM (on CPU oneDNN's fused kernel).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from evopop.agents.native import native_usable
from evopop.agents.native_gru import gru_native
from evopop.agents.native_lstm import lstm_native

Tensor = torch.Tensor


def fast_tanh(x: Tensor) -> Tensor:
    """tanh as `2 sigmoid(2x) - 1` (absolute error ~1e-7): on the project's CPU torch's tanh
    took 168 us on 74k floats, sigmoid 18 us and this 42 us; tanh was the largest cost after
    the matmuls."""
    return torch.sigmoid(2.0 * x) * 2.0 - 1.0


def linear(x: Tensor, weight: Tensor, bias: Tensor,
           activation: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """`x [P, ..., in]` times `weight [P, out, in]` (nn.Linear's layout) plus `bias [P, out]`,
    then `activation`, which may work in place: it gets the matmul's own output, not a view
    (an in-place op on a view would make autograd copy the whole base back)."""
    p, *lead, width = x.shape
    flat = x.reshape(p, -1, width)  # [P, ..., in] -> [P, M, in]
    # the Function (Python around the call) only where a backward will run, not per
    # collection step
    grad = torch.is_grad_enabled()
    out = _StackedLinear.apply(flat, weight, bias) if grad else _affine(flat, weight, bias)
    if activation is not None:
        out = activation(out)
    return out.reshape(p, *lead, out.shape[-1])  # [P, M, out] -> [P, ..., out]


def _affine(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """`x [P, M, in] @ weight^T + bias` for `weight [P, out, in]`, `bias [P, out]`."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class _StackedLinear(torch.autograd.Function):
    """`baddbmm(bias, x, weight^T)` with a backward that picks its products' layouts.

    Autograd's own backward of that call forms the weight gradient as `x^T @ grad` and the
    input gradient as `grad @ weight`. For an output layer (one value, one action) those are a
    matrix-vector product and an outer product, which torch's CPU bmm ran at 347 and 167 us
    for 8 members' W1 minibatch against 43 us for the whole forward (torch.profiler by input
    shape): `grad^T @ x` and a broadcast multiply do the same work without them."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return _affine(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad
        grad_x = grad_weight = grad_bias = None
        if need_x:
            # [P, M, 1] x [P, 1, in]: an outer product, cheaper as a broadcast multiply
            grad_x = grad * weight if weight.shape[1] == 1 else torch.bmm(grad, weight)
        if need_weight:
            grad_weight = torch.bmm(grad.transpose(1, 2), x)
        if need_bias:
            grad_bias = grad.sum(1)
        return grad_x, grad_weight, grad_bias


PER_MEMBER_MIN_STEPS = 4
"""Without the C loops, LSTM sequences of at least this many steps run member by member
through `torch.lstm` (`lstm_per_member`); shorter ones run stacked. Measured on CPU, where the
batched learner runs (`evopop.evolution.plan`), at W1's shapes (H = 64, one thread;
benchmarks/lstm_paths.py and RESULTS.md): from 4 steps per member wins at every P measured, at
2 it loses for small P, and one step is 2-4x faster stacked."""


def lstm_layer(
    x: Tensor, h: Tensor, c: Tensor,
    w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer over `x [P, L, B, in]` from `h, c [P, B, H]` -> (out `[P, L, B, H]`, h, c),
    through `lstm_native` where it takes the sequence (`native_usable`), else
    `lstm_per_member` for sequences of `PER_MEMBER_MIN_STEPS` or more, else `lstm_stacked`."""
    if native_usable(x, x.shape[1]):
        return lstm_native(x, h, c, w_ih, w_hh, b_ih, b_hh)
    if x.shape[1] >= PER_MEMBER_MIN_STEPS:
        return lstm_per_member(x, h, c, w_ih, w_hh, b_ih, b_hh)
    return lstm_stacked(x, h, c, w_ih, w_hh, b_ih, b_hh)


def lstm_per_member(
    x: Tensor, h: Tensor, c: Tensor,
    w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """`lstm_layer` as one `torch.lstm` call per member (what `nn.LSTM` calls, on its member's
    weight slices): on CPU that is oneDNN's LSTM, whose fused steps beat the stacked cells'
    dozen ops per step. `unbind`, not indexing: one backward op gathers the members' grads."""
    outs, hs, cs = [], [], []
    for xp, hp, cp, *weights in zip(*(t.unbind(0) for t in (x, h, c, w_ih, w_hh, b_ih, b_hh)),
                                    strict=True):
        # after the weights: biases, 1 layer, no dropout, train (keeps oneDNN's workspace for
        # backward, as nn.LSTM in training mode), unidirectional, [L, B, in]
        out, h_n, c_n = torch.lstm(xp, (hp.unsqueeze(0), cp.unsqueeze(0)), weights,
                                   True, 1, 0.0, torch.is_grad_enabled(), False, False)
        outs.append(out)
        hs.append(h_n[0])
        cs.append(c_n[0])
    return torch.stack(outs), torch.stack(hs), torch.stack(cs)


def lstm_stacked(
    x: Tensor, h: Tensor, c: Tensor,
    w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """`lstm_layer` as batched matmuls over the member axis, one recurrent product per step."""
    # The g rows are doubled once so that one sigmoid per step serves all four gates:
    # tanh(g) = 2 sigmoid(2g) - 1.
    scale = torch.ones(4 * h.shape[-1], dtype=h.dtype, device=h.device)
    scale[2 * h.shape[-1] : 3 * h.shape[-1]] = 2.0
    rows = scale.unsqueeze(-1)  # [4H, 1]: scaling the weights is cheaper than the gates
    gates_x = linear(x, w_ih * rows, (b_ih + b_hh) * scale)  # [P, L, B, 4H], all steps at once
    w_hh_t = (w_hh * rows).transpose(1, 2)  # [P, H, 4H]
    outs = []
    for gx in gates_x.unbind(1):  # unbind, not gates_x[:, t]: one backward op, not L zero-fills
        i, f, g, o = torch.sigmoid(torch.baddbmm(gx, h, w_hh_t)).chunk(4, dim=-1)  # [P, B, H]
        c = torch.addcmul(f * c, i, g * 2.0 - 1.0)
        h = o * fast_tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=1), h, c


def gru_layer(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> tuple[Tensor, Tensor]:
    """One GRU layer over `x [P, L, B, in]` from `h [P, B, H]` -> (out `[P, L, B, H]`, h),
    through `gru_native` where it takes the sequence (`native_usable`), else `gru_stacked`."""
    if native_usable(x, x.shape[1]):
        return gru_native(x, h, w_ih, w_hh, b_ih, b_hh)
    return gru_stacked(x, h, w_ih, w_hh, b_ih, b_hh)


def gru_stacked(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> tuple[Tensor, Tensor]:
    """`gru_layer` as batched matmuls over the member axis, one recurrent product per step."""
    hidden = h.shape[-1]
    gates_x = linear(x, w_ih, b_ih)  # [P, L, B, 3H]
    w_hh_t, b_hh = w_hh.transpose(1, 2), b_hh.unsqueeze(1)  # [P, H, 3H], [P, 1, 3H]
    outs = []
    for gx in gates_x.unbind(1):
        gh = torch.baddbmm(b_hh, h, w_hh_t)  # [P, B, 3H]
        rz = torch.sigmoid(gx[..., : 2 * hidden] + gh[..., : 2 * hidden])
        r, z = rz[..., :hidden], rz[..., hidden:]
        n = fast_tanh(torch.addcmul(gx[..., 2 * hidden :], r, gh[..., 2 * hidden :]))
        h = torch.lerp(n, h, z)  # (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs, dim=1), h
