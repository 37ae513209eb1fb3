"""Collecting rollouts for a group of members with one batched policy step per env step.

Each member keeps its own vector env, collector (seeds, normaliser statistics, reward scaling,
episode log) and sampling generator; only the network runs once for the whole group
(`evopop.batched.policy_step`). The env side of every step is `collect`'s own (`observe`,
`advance`, `finish`), so a member's buffer is the one `collect` would fill, up to the float
rounding of the batched matmuls.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.batched import StackedPopulation, policy_step
from evopop.rollouts.collect import (
    Collector,
    PolicyDraw,
    advance,
    finish,
    new_buffer,
    observe,
    refresh_sde_noise,
)


def _group_sde_noise(agents: Sequence[Agent], cols: Sequence[Collector], t: int,
                     generators: Sequence[torch.Generator]) -> torch.Tensor | None:
    """Every member's gSDE matrices `[P, N, features, action_dim]`, each redrawn on its own
    schedule from its own generator (None without gSDE)."""
    if not agents[0].head.sde_features:
        return None
    for agent, col, gen in zip(agents, cols, generators, strict=True):
        refresh_sde_noise(agent, col, t, gen)
    return torch.stack([col.sde_noise for col in cols])  # type: ignore[misc]


@torch.inference_mode()
def collect_group(
    pop: StackedPopulation, agents: Sequence[Agent], cols: Sequence[Collector], steps: int,
    generators: Sequence[torch.Generator],
) -> list[RolloutBuffer]:
    """`steps` steps on every member's envs; `pop` must hold the members' current weights
    (`stack(agents)`), and `agents` too (bootstrap values run on each member's own net)."""
    bufs = [new_buffer(a, c, steps) for a, c in zip(agents, cols, strict=True)]
    for t in range(steps):
        seen = [observe(a, c, b, t) for a, c, b in zip(agents, cols, bufs, strict=True)]
        obs = torch.stack([o for o, _ in seen])  # [P, N, obs_dim]
        state = torch.stack([s for _, s in seen], dim=2)  # [C, layers, P, N, H]
        noise = _group_sde_noise(agents, cols, t, generators)
        out = policy_step(pop, obs, state, list(generators), noise)
        for p, (agent, col, buf) in enumerate(zip(agents, cols, bufs, strict=True)):
            draw = PolicyDraw(out.actions[p], out.log_probs[p], out.values[p], out.state[:, :, p])
            advance(agent, col, buf, t, draw)
    return [finish(a, c, b) for a, c, b in zip(agents, cols, bufs, strict=True)]
