"""Collecting rollouts for a group of members with one batched policy step per env step, each
member on its own vector env (`MemberRollouts`; for one env shared by the group, whose env
side is vectorised too, see `evopop.rollouts.shared`).

Each member keeps its own vector env, collector (seeds, normaliser statistics, reward scaling,
episode log) and sampling generator; only the network runs once for the whole group
(`evopop.batched.policy_step`). The env side of every step is `collect`'s own (`observe`,
`advance`, `finish`), so a member's buffer is the one `collect` would fill, up to the float
rounding of the batched matmuls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.episodes import EpisodeLog
from evopop.batched import StackedPopulation, policy_step, stack
from evopop.rollouts.collect import (
    Collector,
    PolicyDraw,
    advance,
    finish,
    new_buffer,
    observe,
    refresh_sde_noise,
)
from evopop.rollouts.vector import VectorRollouts


class GroupSource(Protocol):
    """Where a batched group's rollouts come from: `MemberRollouts` or `SharedRollouts`."""

    def start(self, seeds: Sequence[tuple[int, int]]) -> None:
        """(env reset seed, action sampling seed) per member; fresh episodes follow."""
        ...

    def collect(self, pop: StackedPopulation, agents: Sequence[Agent], live: Sequence[bool],
                steps: int) -> list[RolloutBuffer]:
        """`steps` steps for the `live` members (`pop`: every member stacked); their buffers,
        in order."""
        ...

    def pop_episodes(self, p: int) -> EpisodeLog:
        """Member p's episodes finished since the last call."""
        ...

    def close(self) -> None: ...


class MemberRollouts:
    """A `GroupSource` of one `VectorRollouts` per member."""

    def __init__(self, sources: Sequence[VectorRollouts]) -> None:
        self.sources = list(sources)

    def start(self, seeds: Sequence[tuple[int, int]]) -> None:
        for source, (env_seed, sample_seed) in zip(self.sources, seeds, strict=True):
            source.start(env_seed, sample_seed)

    def collect(self, pop: StackedPopulation, agents: Sequence[Agent], live: Sequence[bool],
                steps: int) -> list[RolloutBuffer]:
        if len({a.spec for a in agents}) > 1:
            raise ValueError("members of other widths share a policy step only on one shared "
                             "env (SharedRollouts), whose states live at the stack's widths")
        rows = [p for p, alive in enumerate(live) if alive]
        if len(rows) < len(agents):
            pop = stack([agents[p] for p in rows])
        group = [agents[p] for p in rows]
        cols, samplers = zip(*(self.sources[p].collector(agents[p]) for p in rows), strict=True)
        return collect_group(pop, group, list(cols), steps, list(samplers))

    def pop_episodes(self, p: int) -> EpisodeLog:
        return self.sources[p].pop_episodes()

    def close(self) -> None:
        for source in self.sources:
            source.close()


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
