"""Evaluating a group of stackable members with one batched policy step per env step.

Each member plays the same seeded episodes as `evaluate` on its own vector env, with its own
frozen normaliser and hidden state (`EpisodePlayer`); only the network runs once for the whole
group. A member's returns are `evaluate`'s, up to the float rounding of the batched matmuls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from evopop.agents.agent import Agent
from evopop.agents.evaluation import IN_PROCESS_WIDTH, EpisodePlayer, EvalResult
from evopop.agents.spaces import PolicyHead
from evopop.batched import reset_states
from evopop.batched.network import StackedNet

AT_ONCE_MAX_WIDTH = IN_PROCESS_WIDTH
"""The widest evaluation (copies per member) measured faster at once, which is the widest an
in-process evaluation gets; wider (process-per-copy) evaluations are unmeasured and stay member
by member."""

AT_ONCE_MIN_GROUP = 4
"""The smallest group evaluated at once. CPU time at once over one by one, 48 episodes on 48
copies, distinct untrained members (benchmarks/eval_cost.py, 2026-12-04): Pendulum (every
episode 200 steps) 1.05x for 2 members, 0.81x for 4, 0.78x for 8, 0.92x for 16, and 0.79x-0.83x
for 4 copies of one member at 16-64 copies. CartPole's episodes (~10-60 steps) differ; since a
member that has played its episodes leaves the stack (2026-12-06, two pairs against the commit
before): 0.87-0.88x for 4 members, 0.86-0.93x for 8, 0.92-0.95x for 16, where the whole group
stepping until its longest member ended gave 0.88-0.92x, 0.96-1.32x and 1.02-1.15x. At once wins
where evaluation is costly (0.15 s of an 8-member W1 chunk's 0.70 s) and where it is cheap
(0.01 s of an 8-member CartPole chunk's 0.13 s)."""


def at_once_pays(group: int, width: int) -> bool:
    """Whether a group of `group` members evaluated `width` copies wide goes faster at once."""
    return group >= AT_ONCE_MIN_GROUP and width <= AT_ONCE_MAX_WIDTH


@torch.inference_mode()
def evaluate_group(agents: Sequence[Agent], envs: Sequence[VectorEnv], episodes: int,
                   seed: int) -> list[EvalResult]:
    """Deterministic `evaluate(agent, envs[p], episodes, seed)` for every member at once; the
    members must stack (`evopop.batched.group_members`) and their envs have equal widths.
    A member whose episodes are all played leaves the stack, so a group whose episode lengths
    differ pays for its longest member only while that member is still playing."""
    net = StackedNet.stack([a.net for a in agents])
    head = PolicyHead(net.action, net.sde_features)
    players = [EpisodePlayer(e, episodes, seed) for e in envs]
    live = list(range(len(agents)))
    state = net.initial_state(envs[0].num_envs)  # [C, layers, P, N, H]
    while live:
        obs = torch.stack([agents[p].as_tensor(agents[p].preprocess(players[p].obs, update=False))
                           for p in live])  # [P_live, N, obs_dim]
        state = reset_states(state, np.stack([players[p].starts for p in live]))
        out, _, state = net.forward(obs.unsqueeze(1), state)  # L = 1
        out = out[:, 0]  # [P, 1, N, out] -> [P, N, out]
        actions = head.sample(out, net.log_std_for(out), True, None).numpy()
        for p, member_actions in zip(live, actions, strict=True):
            players[p].step(agents[p].action_spec.to_env(member_actions))
        rows = [i for i, p in enumerate(live) if players[p].running]  # stack rows still playing
        if len(rows) < len(live):
            live, index = [live[i] for i in rows], torch.tensor(rows, dtype=torch.long)
            net, state = net.select(index), state.index_select(2, index)  # member axis
    return [EvalResult.of(p.log()) for p in players]
