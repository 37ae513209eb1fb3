"""Linear layers and LSTM/GRU layers over a leading member axis, written as batched matmuls.

`nn.LSTM` and `nn.GRU` have no batching rule for a stack of weights, so the cells are spelled
out with PyTorch's gate order and equations (LSTM i, f, g, o with b_ih + b_hh; GRU r, z, n with
`r * (W_hn h + b_hn)`). Tensors are member-major (`[P, L, B, ...]`) so that folding the time and
batch axes into one matmul dimension is a free view; only the recurrent product runs per step.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """`x [P, ..., in]` times `weight [P, out, in]` (nn.Linear's layout) plus `bias [P, out]`."""
    p, *lead, width = x.shape
    flat = x.reshape(p, -1, width)  # [P, ..., in] -> [P, M, in]
    out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
    return out.reshape(p, *lead, out.shape[-1])  # [P, M, out] -> [P, ..., out]


def lstm_layer(
    x: Tensor, h: Tensor, c: Tensor,
    w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer over `x [P, L, B, in]` from `h, c [P, B, H]` -> (out `[P, L, B, H]`, h, c)."""
    hidden = h.shape[-1]
    gates_x = linear(x, w_ih, b_ih + b_hh)  # [P, L, B, 4H], all steps in one matmul
    w_hh_t = w_hh.transpose(1, 2)  # [P, H, 4H]
    outs = []
    for t in range(x.shape[1]):
        gates = torch.baddbmm(gates_x[:, t], h, w_hh_t)  # [P, B, 4H]
        sig = torch.sigmoid(gates)  # i, f, o used; the g slice is recomputed with tanh
        i, f, o = sig[..., :hidden], sig[..., hidden : 2 * hidden], sig[..., 3 * hidden :]
        g = torch.tanh(gates[..., 2 * hidden : 3 * hidden])
        c = torch.addcmul(f * c, i, g)
        h = o * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=1), h, c


def gru_layer(
    x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
) -> tuple[Tensor, Tensor]:
    """One GRU layer over `x [P, L, B, in]` from `h [P, B, H]` -> (out `[P, L, B, H]`, h)."""
    hidden = h.shape[-1]
    gates_x = linear(x, w_ih, b_ih)  # [P, L, B, 3H]
    w_hh_t, b_hh = w_hh.transpose(1, 2), b_hh.unsqueeze(1)  # [P, H, 3H], [P, 1, 3H]
    outs = []
    for t in range(x.shape[1]):
        gx = gates_x[:, t]
        gh = torch.baddbmm(b_hh, h, w_hh_t)  # [P, B, 3H]
        rz = torch.sigmoid(gx[..., : 2 * hidden] + gh[..., : 2 * hidden])
        r, z = rz[..., :hidden], rz[..., hidden:]
        n = torch.tanh(torch.addcmul(gx[..., 2 * hidden :], r, gh[..., 2 * hidden :]))
        h = torch.lerp(n, h, z)  # (1 - z) * n + z * h
        outs.append(h)
    return torch.stack(outs, dim=1), h
