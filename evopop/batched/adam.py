"""Adam and gradient-norm clipping for stacked parameters, per member.

Both run on the population's `[P, D]` buffers (`StackedNet.flat`, `StackedPopulation.grad`:
member p in row p): clipping is one norm and one scale, Adam torch's fused kernel over the
active members' rows (one call per distinct lr, each row with its member's step count). On the
8-member W1 update that took Adam and clipping from ~1.5 ms to ~0.7 ms a round, where they ran a
dozen ops per parameter tensor (benchmarks/update_phases.py, RESULTS.md).

Each member has its own learning rate and its own step count, and only the members marked active
take a step: a zero gradient is not a skipped step for Adam (the moments would still decay and
the step count advance). Adam is the one-member path's kernel (`evopop.agents.optim`); the clip
norm is one norm over the member's row where `nn.utils.clip_grad_norm_` takes the norm of the
per-tensor norms, equal up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor

_CLIP_EPS = 1e-6  # nn.utils.clip_grad_norm_'s


def clip_grad_norms(grad: Tensor, max_norm: Tensor) -> Tensor:
    """Scales each member's gradient row `grad [P, D]` in place so its 2-norm is at most
    `max_norm [P]`; returns the norms `[P]` before clipping."""
    total = torch.linalg.vector_norm(grad, dim=1)
    coef = torch.clamp(max_norm / (total + _CLIP_EPS), max=1.0)
    grad.mul_(coef.unsqueeze(1))
    return total


@dataclass
class StackedAdam:
    """Adam moments `[P, D]`, laid out like the parameter buffer, plus each member's steps."""

    exp_avg: Tensor
    exp_avg_sq: Tensor
    steps: Tensor  # [P] float32 (as the fused kernel reads them): steps each member has taken
    betas: tuple[float, float]
    eps: float

    @classmethod
    def zeros(cls, flat: Tensor, betas: tuple[float, float], eps: float) -> StackedAdam:
        return cls(torch.zeros_like(flat), torch.zeros_like(flat),
                   torch.zeros(flat.shape[0], dtype=torch.float32, device=flat.device),
                   betas, eps)

    @torch.no_grad()
    def step(self, flat: Tensor, grad: Tensor, lr: np.ndarray, active: np.ndarray) -> None:
        """One Adam step of `flat [P, D]` along `grad [P, D]` with `lr [P]` for the members
        where `active [P]` (bool) holds: torch's fused kernel on the active members' rows, each
        with its member's step count (one call per distinct lr)."""
        self.steps += torch.from_numpy(active).to(self.steps.device)
        beta1, beta2 = self.betas
        # one unbind per buffer, not a Python index per member and buffer
        buffers = [t.unbind(0) for t in (flat, grad, self.exp_avg, self.exp_avg_sq, self.steps)]
        rows = np.flatnonzero(active)
        for rate in np.unique(lr[rows]):
            members = rows[lr[rows] == rate]
            params, grads, firsts, seconds, steps = ([b[p] for p in members] for b in buffers)
            torch._fused_adam_(params, grads, firsts, seconds, [], steps, lr=float(rate),
                               beta1=beta1, beta2=beta2, weight_decay=0.0, eps=self.eps,
                               amsgrad=False, maximize=False)
        # the fused kernel writes through raw pointers without bumping `flat`'s version
        # counter, which is how a stack's prepared C-step weights learn that they are stale
        torch.autograd.graph.increment_version(flat)
