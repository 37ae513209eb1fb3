"""Evaluating a group of stackable members with one batched policy step per env step.

Each member plays the same seeded episodes as `evaluate` on its own vector env, with its own
frozen normaliser and hidden state (`EpisodePlayer`); only the network runs once for the whole
group, and on envpool's batch the env too (`evaluate_group_shared`: one batch of every member's
copies). A member's returns are `evaluate`'s, up to the float rounding of the batched matmuls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from evopop.agents.agent import Agent
from evopop.agents.evaluation import IN_PROCESS_WIDTH, EpisodePlayer, EpisodeTally, EvalResult
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

AT_ONCE_MIN_SHARED_GROUP = 2
"""The smallest group evaluated at once on one envpool batch (`evaluate_group_shared`), which
also saves an env step per member and step: 48 episodes, distinct untrained members, CPU time
at once over one by one (benchmarks/eval_cost.py, 2026-12-07): Pendulum 0.72x for 2 members,
0.66x for 3, 0.62x for 4, 0.49x for 8; CartPole 0.80x, 0.72x, 0.66x, 0.81x."""


def at_once_pays(group: int, width: int, *, shared: bool) -> bool:
    """Whether a group of `group` members evaluated `width` copies wide goes faster at once,
    on one batch of all their copies (`shared`) or on an env each."""
    smallest = AT_ONCE_MIN_SHARED_GROUP if shared else AT_ONCE_MIN_GROUP
    return group >= smallest and width <= AT_ONCE_MAX_WIDTH


@torch.inference_mode()
def evaluate_group(agents: Sequence[Agent], envs: Sequence[VectorEnv], episodes: int,
                   seed: int) -> list[EvalResult]:
    """Deterministic `evaluate(agent, envs[p], episodes, seed)` for every member at once; the
    members must stack (`evopop.batched.group_members`) and their envs have equal widths."""
    players = [EpisodePlayer(e, episodes, seed) for e in envs]

    def step(live: list[int], actions: np.ndarray) -> None:
        for p, member_actions in zip(live, actions, strict=True):
            players[p].step(agents[p].action_spec.to_env(member_actions))

    return _play(agents, players, step)


@torch.inference_mode()
def evaluate_group_shared(agents: Sequence[Agent], env: VectorEnv, episodes: int,
                          seed: int) -> list[EvalResult]:
    """`evaluate_group` on one vector env of every member's copies (member p's are copies
    p W to (p + 1) W - 1, seeded as its own env would be): one env step per step instead of
    one per member. On envpool's batch, stepping 8 W1 members' 48 copies for an episode took
    0.30 s as 8 batches and 0.10 s as one. The returns are `evaluate_group`'s, bit for bit.
    Every episode needs a copy (`episodes` <= W), as on a `fast` evaluation env
    (`eval_env_spec`). Array observations only (envpool's are)."""
    if not agents or env.num_envs % len(agents):
        raise ValueError(f"{env.num_envs} copies do not split evenly among {len(agents)} members")
    width = env.num_envs // len(agents)
    if episodes > width:  # a tally never resets its rows: every episode needs a copy
        raise ValueError(f"{episodes} episodes on {width} copies per member: a shared "
                         f"evaluation needs a row for every episode")
    obs, _ = env.reset(seed=[seed + i for _ in agents for i in range(width)])
    players = [EpisodeTally(obs[p * width : (p + 1) * width], width, episodes, seed, p * width)
               for p in range(len(agents))]
    actions = np.zeros((len(agents), width, agents[0].action_spec.action_dim), np.float32)

    def step(live: list[int], chosen: np.ndarray) -> None:
        actions[live] = chosen  # the copies of members that are done step on, unread
        out = env.step(agents[0].action_spec.to_env(actions.reshape(env.num_envs, -1)))
        obs, reward, term, trunc, infos = out
        for p in live:
            rows = slice(p * width, (p + 1) * width)
            players[p].observe(obs[rows], reward[rows], term[rows], trunc[rows], infos)

    return _play(agents, players, step)


def _play(agents: Sequence[Agent], players: Sequence[EpisodeTally],
          step: Callable[[list[int], np.ndarray], None]) -> list[EvalResult]:
    """The members' batched policy steps until every player is done; `step(live, actions)`
    plays the live members' actions `[P_live, N, action_dim]`. A member whose episodes are all
    played leaves the stack, so a group whose episode lengths differ pays for its longest
    member only while that member is still playing."""
    net = StackedNet.stack([a.net for a in agents])
    head = PolicyHead(net.action, net.sde_features)
    live = list(range(len(agents)))
    state = net.initial_state(players[0].width)  # [C, layers, P, N, H]
    while live:
        obs = torch.stack([agents[p].as_tensor(agents[p].preprocess(players[p].obs, update=False))
                           for p in live])  # [P_live, N, obs_dim]
        state = reset_states(state, np.stack([players[p].starts for p in live]))
        out, state = net.actor(obs.unsqueeze(1), state)  # L = 1
        out = out[:, 0]  # [P, 1, N, out] -> [P, N, out]
        step(live, head.sample(out, net.log_std_for(out), True, None).numpy())
        rows = [i for i, p in enumerate(live) if players[p].running]  # stack rows still playing
        if len(rows) < len(live):
            live, index = [live[i] for i in rows], torch.tensor(rows, dtype=torch.long)
            net, state = net.select(index), state.index_select(2, index)  # member axis
    return [EvalResult.of(p.log()) for p in players]
