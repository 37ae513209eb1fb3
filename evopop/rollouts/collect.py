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


@dataclass(frozen=True)
class PolicyDraw:
    """One step's policy output for one member's envs: what `advance` records."""

    actions: torch.Tensor  # [N, action_dim]
    log_probs: torch.Tensor  # [N]
    values: torch.Tensor  # [N]
    state: torch.Tensor  # [C, layers, N, H] after the step


def new_buffer(agent: Agent, col: Collector, steps: int) -> RolloutBuffer:
    return RolloutBuffer.allocate(steps, col.envs.num_envs, agent.encoder.dim,
                                  agent.action_spec.action_dim, tuple(col.state.shape))


def observe(agent: Agent, col: Collector, buf: RolloutBuffer, t: int) -> tuple[torch.Tensor,
                                                                              torch.Tensor]:
    """The env-side start of step t: normalised observations `[N, obs_dim]` and the state
    reset at episode starts, both written to the buffer, for the policy to act on."""
    buf.obs[t] = agent.preprocess(col.obs, update=True)
    col.state = reset_state(col.state, col.episode_start)
    buf.states[t] = col.state
    buf.episode_start[t] = col.episode_start
    return agent.as_tensor(buf.obs[t]), col.state


def refresh_sde_noise(agent: Agent, col: Collector, t: int, generator: torch.Generator) -> None:
    """Redraws the member's gSDE matrices every `sde_sample_freq` steps (and at the start of
    every rollout: the update has changed log_std)."""
    if agent.head.sde_features and t % agent.params.sde_sample_freq == 0:
        col.sde_noise = agent.head.sde_noise(col.envs.num_envs, agent.net.log_std, generator)


def advance(agent: Agent, col: Collector, buf: RolloutBuffer, t: int, draw: PolicyDraw) -> None:
    """The env-side end of step t: records the policy's draw, steps the envs, bootstraps
    truncated episodes with V(final obs), scales rewards and logs finished episodes."""
    buf.log_probs[t] = draw.log_probs.cpu().numpy()
    buf.actions[t] = draw.actions.cpu().numpy()
    buf.values[t] = draw.values.cpu().numpy()
    col.state = draw.state
    col.obs, reward, term, trunc, infos = col.envs.step(agent.action_spec.to_env(buf.actions[t]))
    dones = term | trunc
    buf.terminated[t], buf.truncated[t] = term, trunc
    bootstrap = np.flatnonzero(trunc & ~term)
    if bootstrap.size:
        buf.bootstrap_values[t, bootstrap] = _final_values(agent, infos, bootstrap, col.state)
    reward = np.asarray(reward, np.float64)
    if agent.reward_scaler is not None:
        buf.rewards[t] = agent.reward_scaler(reward, col.scaled_returns, dones, update=True)
    else:
        buf.rewards[t] = reward
    col.record_step(reward, dones, infos)
    col.episode_start = dones


def finish(agent: Agent, col: Collector, buf: RolloutBuffer) -> RolloutBuffer:
    """V(last observation) for the update's GAE; the rollout is complete."""
    x = agent.as_tensor(agent.preprocess(col.obs, update=False))
    state = reset_state(col.state, col.episode_start)
    buf.last_values[:] = agent.net.value(x[None], state)[0].cpu().numpy()
    return buf


@torch.inference_mode()
def collect(
    agent: Agent, col: Collector, steps: int, generator: torch.Generator
) -> RolloutBuffer:
    """Runs `steps` steps on every env of `col` with the agent's stochastic policy.

    The network runs on the agent's device; the buffer is filled on the host."""
    buf = new_buffer(agent, col, steps)
    net, head, log_std = agent.net, agent.head, agent.net.log_std
    for t in range(steps):
        obs, state = observe(agent, col, buf, t)
        out, value, state = net(obs[None], state)
        refresh_sde_noise(agent, col, t, generator)
        action = head.sample(out[0], log_std, False, generator, col.sde_noise)
        log_prob = head.log_prob(out[0], log_std, action)
        advance(agent, col, buf, t, PolicyDraw(action, log_prob, value[0], state))
    return finish(agent, col, buf)
