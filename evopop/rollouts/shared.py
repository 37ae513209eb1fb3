"""Collection for a whole group on one vector env: every member's env copies stepped together.

The env holds P blocks of N copies, block p seeded exactly as member p's own N-copy env would
be (copy j of member p gets `env_seed_p + j`), and envpool's and Gymnasium's copies do not
depend on their neighbours, so member p sees the episodes it would see alone. Each env step is
one env call for the whole group, one batched policy step (`policy_step`), and the env-side
bookkeeping of `collect` (normalisers, reward scaling, truncation bootstrap, episode logs) done
on `[P, N]` arrays. A member's buffer is the one `collect` fills on its own, up to the float
rounding of the batched matmuls (tests/test_group_train.py).

For the per-member alternative (each member its own env: timed async envs), see
`evopop.rollouts.group`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from evopop.agents.agent import Agent
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.episodes import EpisodeLog
from evopop.agents.normalize import StackedObsNorm, StackedRewardScaler
from evopop.agents.spaces import batch_one
from evopop.batched import StackedPopulation, policy_step, reset_states
from evopop.envs.metrics import final_metrics
from evopop.seeding import torch_generator


@dataclass
class _Carry:
    """What carries over between a group's rollouts (`Collector`'s fields, `[P, N]`)."""

    obs: Any
    state: torch.Tensor  # [C, layers, P, N, H]
    episode_start: np.ndarray
    scaled_returns: np.ndarray
    ep_return: np.ndarray
    ep_length: np.ndarray
    samplers: list[torch.Generator]
    logs: list[EpisodeLog]
    sde_noise: list[torch.Tensor | None]
    steps_done: int = 0


class SharedRollouts:
    """A group's rollouts on one lockstep vector env of P x N copies (`make_vec_env` with
    `num_envs` = P * N; envpool's or Gymnasium's sync copies)."""

    def __init__(self, envs: VectorEnv, members: int) -> None:
        if envs.num_envs % members:
            raise ValueError(f"{envs.num_envs} env copies do not split into {members} members")
        self.envs, self.members = envs, members
        self.num_envs = envs.num_envs // members  # per member
        self._seeds: list[tuple[int, int]] = []
        self._carry: _Carry | None = None

    @property
    def closed(self) -> bool:
        return bool(self.envs.closed)

    def start(self, seeds: Sequence[tuple[int, int]]) -> None:
        """(env reset seed, action sampling seed) per member: the next rollout starts fresh
        episodes, as `VectorRollouts.start` does for one member."""
        if len(seeds) != self.members:
            raise ValueError(f"{len(seeds)} seeds for a group of {self.members}")
        self._seeds, self._carry = list(seeds), None

    def _begin(self, pop: StackedPopulation) -> _Carry:
        n, size = self.num_envs, self.members
        env_seeds = [s + j for s, _ in self._seeds for j in range(n)]
        obs, _ = self.envs.reset(seed=env_seeds)
        shape = (size, n)
        return _Carry(obs, pop.net.initial_state(n), np.ones(shape, bool), np.zeros(shape),
                      np.zeros(shape), np.zeros(shape, np.int64),
                      [torch_generator(s) for _, s in self._seeds],
                      [EpisodeLog() for _ in range(size)], [None] * size)

    def pop_episodes(self, p: int) -> EpisodeLog:
        """Member p's episodes finished since the last call."""
        if self._carry is None:
            return EpisodeLog()
        done, self._carry.logs[p] = self._carry.logs[p], EpisodeLog()
        return done

    @torch.inference_mode()
    def collect(self, pop: StackedPopulation, agents: Sequence[Agent], live: Sequence[bool],
                steps: int) -> list[RolloutBuffer]:
        """`steps` steps on every copy; `pop` must hold all P members' current weights
        (`stack(agents)`). Members not `live` (stopped: non-finite) play neutral actions and
        keep their normaliser statistics; the buffers are the live members', in order."""
        if len(agents) != self.members:
            raise ValueError(f"{len(agents)} agents for a group of {self.members}")
        if self._carry is None:
            self._carry = self._begin(pop)
        return _Run(self, pop, list(agents), list(live)).collect(self._carry, steps)

    def close(self) -> None:
        self.envs.close()


class _Run:
    """One `SharedRollouts.collect`: the stacked normalisers and the step loop. The rollout is
    one `RolloutBuffer` of all P x N copies (member p's are copies p N to (p + 1) N - 1);
    per-member bookkeeping sees them as `[P, N]`."""

    def __init__(self, source: SharedRollouts, pop: StackedPopulation, agents: list[Agent],
                 live: list[bool]) -> None:
        self.source, self.pop, self.agents, self.live = source, pop, agents, live
        self.encoder, self.spec = agents[0].encoder, agents[0].action_spec
        self.obs_norm = StackedObsNorm([a.obs_norm for a in agents])
        self.rewards = StackedRewardScaler([a.reward_scaler for a in agents])
        self.grid = (source.members, source.num_envs)
        self.dead_copies = np.flatnonzero(np.repeat(~np.asarray(live), source.num_envs))

    def encode(self, raw: Any, update: bool) -> np.ndarray:
        """Raw observations of every copy -> normalised `[P, N, dim]`."""
        return self.obs_norm(self.encoder(raw).reshape(*self.grid, -1), update)

    def collect(self, carry: _Carry, steps: int) -> list[RolloutBuffer]:
        c, layers, _, _, hidden = carry.state.shape
        copies = self.source.envs.num_envs
        buf = RolloutBuffer.allocate(steps, copies, self.encoder.dim, self.spec.action_dim,
                                     (c, layers, copies, hidden))
        for t in range(steps):
            self.step(carry, buf, t)
        x = torch.from_numpy(self.encode(carry.obs, update=False))
        state = reset_states(carry.state, carry.episode_start)
        buf.last_values[:] = self.pop.net.value(x.unsqueeze(1), state)[:, 0].reshape(-1).numpy()
        self.obs_norm.write_back(self.live)
        self.rewards.write_back(self.live)
        n = self.source.num_envs
        return [buf.envs(p * n, (p + 1) * n) for p, alive in enumerate(self.live) if alive]

    def step(self, carry: _Carry, buf: RolloutBuffer, t: int) -> None:
        x = self.encode(carry.obs, update=True)
        buf.obs[t] = x.reshape(buf.num_envs, -1)
        carry.state = reset_states(carry.state, carry.episode_start)
        buf.states[t] = carry.state.flatten(2, 3)
        buf.episode_start[t] = carry.episode_start.reshape(-1)
        out = policy_step(self.pop, torch.from_numpy(x), carry.state, carry.samplers,
                          self.sde_noise(carry, t))
        buf.actions[t] = out.actions.flatten(0, 1).numpy()
        buf.log_probs[t] = out.log_probs.reshape(-1).numpy()
        buf.values[t] = out.values.reshape(-1).numpy()
        carry.state = out.state
        actions = buf.actions[t]
        if self.dead_copies.size:  # a valid action for every space (to_env clips or offsets)
            actions = actions.copy()
            actions[self.dead_copies] = 0.0
        carry.obs, reward, term, trunc, infos = self.source.envs.step(self.spec.to_env(actions))
        buf.terminated[t], buf.truncated[t] = term, trunc
        bootstrap = trunc & ~term
        if bootstrap.any():
            buf.bootstrap_values[t][bootstrap] = self.final_values(carry, infos, bootstrap)
        dones = (term | trunc).reshape(self.grid)
        reward = np.asarray(reward, np.float64).reshape(self.grid)
        buf.rewards[t] = self.rewards(reward, carry.scaled_returns, dones, update=True).reshape(-1)
        self.record(carry, reward, dones, infos)
        carry.episode_start = dones

    def sde_noise(self, carry: _Carry, t: int) -> torch.Tensor | None:
        """Every member's gSDE matrices `[P, N, features, action_dim]`, each redrawn on its own
        schedule from its own generator (None without gSDE)."""
        if not self.pop.head.sde_features:
            return None
        for p, agent in enumerate(self.agents):
            if t % agent.params.sde_sample_freq == 0:
                carry.sde_noise[p] = agent.head.sde_noise(self.source.num_envs,
                                                          agent.net.log_std, carry.samplers[p])
        return torch.stack(carry.sde_noise)  # type: ignore[arg-type]

    def final_values(self, carry: _Carry, infos: dict[str, Any],
                     copies: np.ndarray) -> np.ndarray:
        """V(final observation) of the truncated `copies` (a mask over all P x N), from the
        state after their last step; every member at once (the other copies' values are not
        used)."""
        encoded = self.encoder(carry.obs).copy()  # the encoder may return the env's array
        finals = infos["final_obs"]
        for i in np.flatnonzero(copies):
            encoded[i] = self.encoder(batch_one(finals[i]))[0]
        x = self.obs_norm(encoded.reshape(*self.grid, -1), update=False)
        values = self.pop.net.value(torch.from_numpy(x).unsqueeze(1), carry.state)[:, 0]
        return values.reshape(-1).numpy()[copies]

    def record(self, carry: _Carry, rewards: np.ndarray, dones: np.ndarray,
               infos: dict[str, Any]) -> None:
        """`Collector.record_step` for every member: returns, lengths and finished episodes."""
        carry.ep_return += rewards
        carry.ep_length += 1
        carry.steps_done += 1
        n = self.source.num_envs
        for p, i in zip(*np.nonzero(dones), strict=True):
            log = carry.logs[p]
            log.returns.append(float(carry.ep_return[p, i]))
            log.lengths.append(int(carry.ep_length[p, i]))
            log.ends.append(carry.steps_done)
            metrics = final_metrics(infos, int(p * n + i))
            if metrics is not None:
                log.metrics.append(metrics)
                log.metric_ends.append(carry.steps_done)
        carry.ep_return[dones] = 0.0
        carry.ep_length[dones] = 0
