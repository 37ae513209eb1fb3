"""Adam and gradient-norm clipping for stacked parameters, per member.

Each member has its own learning rate and its own step count, and only the members marked active
take a step: a zero gradient is not a skipped step for Adam (the moments would still decay and
the step count advance). The arithmetic follows `torch.optim.Adam` (single-tensor path:
lerp for the first moment, bias corrections in double precision, eps added after dividing by
the bias-corrected root) and `nn.utils.clip_grad_norm_` over each member's own parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor

_CLIP_EPS = 1e-6  # nn.utils.clip_grad_norm_'s


def _per_member(values: np.ndarray, like: Tensor) -> Tensor:
    """`[P]` numbers as a float tensor shaped `[P, 1, ...]` to broadcast against `like`."""
    t = torch.as_tensor(values, dtype=like.dtype)
    return t.view(-1, *([1] * (like.dim() - 1)))


def clip_grad_norms(params: list[Tensor], max_norm: Tensor) -> Tensor:
    """Scales each member's gradients so their joint 2-norm is at most `max_norm [P]`; returns
    the norms `[P]` before clipping."""
    grads = [p.grad for p in params]
    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, dim=1)  # [P]
    coef = torch.clamp(max_norm / (total + _CLIP_EPS), max=1.0)
    for p in params:  # out of place: autograd may leave two grads as views of one buffer
        p.grad = p.grad * coef.view(-1, *([1] * (p.grad.dim() - 1)))
    return total


@dataclass
class StackedAdam:
    """Adam moments stacked like the parameters, plus each member's step count."""

    exp_avg: list[Tensor]  # [P, *shape] per parameter
    exp_avg_sq: list[Tensor]
    steps: np.ndarray  # [P] int64: steps each member has taken
    betas: tuple[float, float]
    eps: float

    @classmethod
    def zeros(cls, params: list[Tensor], betas: tuple[float, float], eps: float) -> StackedAdam:
        size = params[0].shape[0]
        return cls([torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params],
                   np.zeros(size, np.int64), betas, eps)

    @torch.no_grad()
    def step(self, params: list[Tensor], lr: np.ndarray, active: np.ndarray) -> None:
        """One Adam step with `lr [P]` for the members where `active [P]` (bool) holds."""
        beta1, beta2 = self.betas
        self.steps = self.steps + active
        steps = np.maximum(self.steps, 1).astype(np.float64)  # inactive: any finite value
        step_size = np.where(active, lr / (1.0 - beta1**steps), 0.0)
        bc2_sqrt = np.sqrt(1.0 - beta2**steps)
        every = bool(active.all())
        for param, m, v in zip(params, self.exp_avg, self.exp_avg_sq, strict=True):
            grad = param.grad
            if every:
                m.lerp_(grad, 1.0 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            else:
                keep = _per_member(active, m).bool()
                m.copy_(torch.where(keep, torch.lerp(m, grad, 1.0 - beta1), m))
                v_new = torch.addcmul(v * beta2, grad, grad, value=1.0 - beta2)
                v.copy_(torch.where(keep, v_new, v))
            denom = (v.sqrt() / _per_member(bc2_sqrt, v)).add_(self.eps)
            param.sub_(_per_member(step_size, m) * (m / denom))
