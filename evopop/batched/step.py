"""One collection step for all P members' env copies at once.

The network runs batched; random draws come from each member's own `torch.Generator`, in the
shapes and order `PolicyHead.sample` draws them for that member alone, so a member's actions
equal its unbatched collection path sample for sample. (One batched draw cannot reproduce P
separate generator streams, so only the noise is drawn per member; the arithmetic is batched.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evopop.agents.spaces import ActionKind
from evopop.batched.population import StackedPopulation

Tensor = torch.Tensor


@dataclass
class StepOutput:
    """What `collect` records for one step, for every member."""

    actions: Tensor  # [P, N, action_dim]
    log_probs: Tensor  # [P, N]
    values: Tensor  # [P, N]
    state: Tensor  # [C, layers, P, N, H] after the step


def reset_states(state: Tensor, episode_start: np.ndarray) -> Tensor:
    """Zeroes the state of the envs whose episode starts now (`episode_start [P, N]`)."""
    if not episode_start.any():
        return state
    keep = torch.from_numpy(~episode_start).to(state.dtype)
    return state * keep[None, None, :, :, None]


def draw_sde_noise(pop: StackedPopulation, n: int, generators: list[torch.Generator]) -> Tensor:
    """Fresh gSDE matrices `[P, n, features, action_dim]`, as `PolicyHead.sde_noise` per member."""
    log_std = pop.net.params["log_std"].detach()  # [P, F, A]
    eps = torch.stack([torch.randn((n, *log_std.shape[1:]), generator=g, dtype=log_std.dtype)
                       for g in generators])
    return eps * log_std.exp().unsqueeze(1)


def _sample(pop: StackedPopulation, out: Tensor, log_std: Tensor | None,
            generators: list[torch.Generator], noise: Tensor | None) -> Tensor:
    """Stochastic actions `[P, N, action_dim]` from actor outputs `[P, N, out]`."""
    head = pop.head
    if head.spec.kind is ActionKind.CONTINUOUS:
        mean, std, feat = head.gaussian(out, log_std)
        if feat is None:
            eps = torch.stack([torch.randn(mean.shape[1:], generator=g, dtype=mean.dtype)
                               for g in generators])
            return mean + eps * std
        if noise is None:
            noise = draw_sde_noise(pop, out.shape[1], generators)
        return mean + (feat.unsqueeze(-2) @ noise).squeeze(-2)
    picks = []
    for logits in torch.split(out, list(head.spec.nvec), dim=-1):
        u = torch.stack([torch.rand(logits.shape[1:], generator=g, dtype=logits.dtype)
                         for g in generators])
        picks.append((logits - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1))
    return torch.stack(picks, dim=-1).to(out.dtype)


@torch.inference_mode()
def policy_step(
    pop: StackedPopulation, obs: Tensor, state: Tensor, generators: list[torch.Generator],
    sde_noise: Tensor | None = None,
) -> StepOutput:
    """obs `[P, N, obs_dim]` (normalised), state `[C, layers, P, N, H]` (already reset at
    episode starts) -> actions, log-probs, values and new state, as `collect` per member."""
    out, values, new_state = pop.net.forward(obs.unsqueeze(1), state)  # L = 1
    out = out[:, 0]  # [P, 1, N, out] -> [P, N, out]
    log_std = pop.net.log_std_for(out)
    actions = _sample(pop, out, log_std, generators, sde_noise)
    log_probs = pop.head.log_prob(out, log_std, actions)
    return StepOutput(actions, log_probs, values[:, 0], new_state)
