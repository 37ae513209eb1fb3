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
from evopop.agents.evaluation import EpisodePlayer, EvalResult
from evopop.agents.spaces import PolicyHead
from evopop.batched import reset_states
from evopop.batched.network import StackedNet

AT_ONCE_MAX_WIDTH = 16
"""The widest evaluation (copies per member) that runs faster at once than member by member:
the batched step saves per-op overhead, which dominates narrow steps, but its hand-written
cells (and the critic it computes along) cost more than `nn.LSTM` on wide ones. Four members,
CPU time (benchmarks/eval_cost.py): at once took 0.63x / 0.52x of one by one (Pendulum /
CartPole) at 3 copies, 0.70x / 0.64x at 10, 0.89x / 0.79x at 16, 0.99x / 1.17x at 32 and
1.04x / 1.09x at 64."""


def at_once_pays(width: int) -> bool:
    """Whether a group evaluation `width` copies wide is faster at once (`AT_ONCE_MAX_WIDTH`)."""
    return width <= AT_ONCE_MAX_WIDTH


@torch.inference_mode()
def evaluate_group(agents: Sequence[Agent], envs: Sequence[VectorEnv], episodes: int,
                   seed: int) -> list[EvalResult]:
    """Deterministic `evaluate(agent, envs[p], episodes, seed)` for every member at once; the
    members must stack (`evopop.batched.group_members`) and their envs have equal widths."""
    net = StackedNet.stack([a.net for a in agents])
    head = PolicyHead(net.action, net.sde_features)
    players = [EpisodePlayer(e, episodes, seed) for e in envs]
    state = net.initial_state(envs[0].num_envs)  # [C, layers, P, N, H]
    while any(p.running for p in players):
        obs = torch.stack([a.as_tensor(a.preprocess(p.obs, update=False))
                           for a, p in zip(agents, players, strict=True)])  # [P, N, obs_dim]
        state = reset_states(state, np.stack([p.starts for p in players]))
        out, _, state = net.forward(obs.unsqueeze(1), state)  # L = 1
        out = out[:, 0]  # [P, 1, N, out] -> [P, N, out]
        actions = head.sample(out, net.log_std_for(out), True, None).numpy()
        for agent, player, member_actions in zip(agents, players, actions, strict=True):
            if player.running:
                player.step(agent.action_spec.to_env(member_actions))
    return [EvalResult.of(p.log()) for p in players]
