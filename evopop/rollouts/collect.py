"""Rollout collection on a Gymnasium vector env in SAME_STEP autoreset mode.

SAME_STEP means the step that ends an episode already returns the next episode's first observation
(the final one is in `infos["final_obs"]`), so every step is a real transition and nothing has to be
skipped (Gymnasium's default NEXT_STEP mode returns one junk step after each episode end).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from evopop.agents.agent import Agent, reset_state
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.episodes import EpisodeLog
from evopop.agents.spaces import batch_one
from evopop.envs.metrics import final_metrics


@dataclass
class Collector:
    """What carries over between rollouts: last observation, hidden state, episode bookkeeping."""

    envs: VectorEnv
    obs: Any
    state: torch.Tensor
    episode_start: np.ndarray
    scaled_returns: np.ndarray
    ep_return: np.ndarray
    ep_length: np.ndarray
    sde_noise: torch.Tensor | None = None
    finished: EpisodeLog = field(default_factory=EpisodeLog)
    steps_done: int = 0

    @classmethod
    def start(cls, agent: Agent, envs: VectorEnv, seed: int | None = None) -> Collector:
        obs, _ = envs.reset(seed=seed)
        n = envs.num_envs
        return cls(envs, obs, agent.initial_state(n), np.ones(n, bool), np.zeros(n),
                   np.zeros(n), np.zeros(n, np.int64))

    def pop_episodes(self) -> EpisodeLog:
        """The episodes finished since the last call."""
        done, self.finished = self.finished, EpisodeLog()
        return done

    def record_step(self, rewards: np.ndarray, dones: np.ndarray, infos: dict[str, Any]) -> None:
        self.ep_return += rewards
        self.ep_length += 1
        self.steps_done += 1
        for i in np.flatnonzero(dones):
            self.finished.returns.append(float(self.ep_return[i]))
            self.finished.lengths.append(int(self.ep_length[i]))
            self.finished.ends.append(self.steps_done)
            metrics = final_metrics(infos, int(i))
            if metrics is not None:
                self.finished.metrics.append(metrics)
                self.finished.metric_ends.append(self.steps_done)
        self.ep_return[dones] = 0.0
        self.ep_length[dones] = 0


def _final_values(
    agent: Agent, infos: dict[str, Any], rows: np.ndarray, state: torch.Tensor
) -> np.ndarray:
    """V(final observation) for the truncated envs `rows`, from the state after their last step."""
    finals = infos["final_obs"]
    encoded = np.concatenate([agent.preprocess(batch_one(finals[i]), update=False) for i in rows])
    values = agent.net.value(agent.as_tensor(encoded)[None], state[:, :, agent.as_tensor(rows)])
    return values[0].cpu().numpy()


@torch.inference_mode()
def collect(
    agent: Agent, col: Collector, steps: int, generator: torch.Generator
) -> RolloutBuffer:
    """Runs `steps` steps on every env of `col` with the agent's stochastic policy.

    The network runs on the agent's device; the buffer is filled on the host."""
    n = col.envs.num_envs
    buf = RolloutBuffer.allocate(steps, n, agent.encoder.dim, agent.action_spec.action_dim,
                                 tuple(col.state.shape))
    net, head, log_std = agent.net, agent.head, agent.net.log_std
    state = col.state
    for t in range(steps):
        x = agent.preprocess(col.obs, update=True)
        buf.obs[t] = x
        state = reset_state(state, col.episode_start)
        buf.states[t] = state
        buf.episode_start[t] = col.episode_start
        out, value, state = net(agent.as_tensor(buf.obs[t])[None], state)
        if head.sde_features and t % agent.params.sde_sample_freq == 0:
            # redrawn at the start of every rollout too: the update has changed log_std
            col.sde_noise = head.sde_noise(n, log_std, generator)
        action = head.sample(out[0], log_std, False, generator, col.sde_noise)
        buf.log_probs[t] = head.log_prob(out[0], log_std, action).cpu().numpy()
        buf.actions[t] = action.cpu().numpy()
        buf.values[t] = value[0].cpu().numpy()

        env_actions = agent.action_spec.to_env(buf.actions[t])
        col.obs, reward, term, trunc, infos = col.envs.step(env_actions)
        dones = term | trunc
        buf.terminated[t], buf.truncated[t] = term, trunc
        bootstrap = np.flatnonzero(trunc & ~term)
        if bootstrap.size:
            buf.bootstrap_values[t, bootstrap] = _final_values(agent, infos, bootstrap, state)
        reward = np.asarray(reward, np.float64)
        if agent.reward_scaler is not None:
            buf.rewards[t] = agent.reward_scaler(reward, col.scaled_returns, dones, update=True)
        else:
            buf.rewards[t] = reward
        col.record_step(reward, dones, infos)
        col.episode_start = dones

    col.state = state
    x = agent.as_tensor(agent.preprocess(col.obs, update=False))
    buf.last_values[:] = net.value(x[None], reset_state(state, col.episode_start))[0].cpu().numpy()
    return buf
