"""Per-member RL hyperparameters of one update, as `[P]` arrays and tensors.

Optional settings become neutral values (no value clip: infinite bound; no target KL: infinite
threshold) so every member runs the same tensor program; switches become per-member masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evopop.agents.agent import Agent

Tensor = torch.Tensor


def _column(values: list[float]) -> Tensor:
    """`[P]` floats as a float32 tensor `[P, 1, 1]` that broadcasts against `[P, L, S]`."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1)


@dataclass(frozen=True)
class MemberHParams:
    """Hyperparameters of P members for one update; loss coefficients are `[P, 1, 1]`."""

    lr: np.ndarray  # [P] float64, after annealing
    clip: Tensor  # [P, 1, 1] after annealing
    clip_low: Tensor  # 1 - clip, rounded once from double as ppo_update's python floats are
    clip_high: Tensor
    ent_coef: Tensor
    vf_coef: Tensor
    vf_clip: Tensor  # inf where the member has none
    use_vf_clip: Tensor  # [P, 1, 1] bool
    norm_adv: Tensor  # [P, 1, 1] bool
    max_grad_norm: Tensor  # [P]
    target_kl: np.ndarray  # [P] float64, inf where the member has none

    @classmethod
    def of(cls, agents: list[Agent], remaining: np.ndarray) -> MemberHParams:
        """Reads each member's params; lr goes through `Agent.apply_lr` (the one lr writer)."""
        params = [a.params for a in agents]
        lr = np.array([a.apply_lr(float(r)) for a, r in zip(agents, remaining, strict=True)])
        clip = [p.clip_coef * (float(r) if p.anneal else 1.0)
                for p, r in zip(params, remaining, strict=True)]
        return cls(
            lr=lr,
            clip=_column(clip),
            clip_low=_column([1.0 - c for c in clip]),
            clip_high=_column([1.0 + c for c in clip]),
            ent_coef=_column([p.ent_coef for p in params]),
            vf_coef=_column([p.vf_coef for p in params]),
            vf_clip=_column([np.inf if p.vf_clip is None else p.vf_clip for p in params]),
            use_vf_clip=torch.tensor([p.vf_clip is not None for p in params]).view(-1, 1, 1),
            norm_adv=torch.tensor([p.norm_adv for p in params]).view(-1, 1, 1),
            max_grad_norm=torch.tensor([p.max_grad_norm for p in params], dtype=torch.float32),
            target_kl=np.array([np.inf if p.target_kl is None else p.target_kl for p in params]),
        )
