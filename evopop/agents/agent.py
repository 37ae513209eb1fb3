"""`Agent`: one recurrent PPO learner with everything that belongs to it.

The agent owns its network, optimizer and normaliser statistics (cloned and saved together) and
the device they live on; the environments and the carried hidden state of a rollout belong to the
collector. Observations enter as host arrays and go to the device once per step; actions come
back as host arrays for the env. Random draws always use CPU generators (see `PolicyHead`), so
a device changes floating-point kernels, never a random stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from evopop.agents.networks import ActorCritic
from evopop.agents.normalize import ObsNormalizer, RewardScaler
from evopop.agents.optim import FusedAdam
from evopop.agents.spaces import ActionSpec, ObsEncoder, PolicyHead
from evopop.agents.spec import NetSpec, PPOParams
from evopop.agents.transfer import transfer_weights
from evopop.seeding import torch_generator

ADAM_EPS = 1e-5


class Agent:
    """A recurrent actor-critic plus optimizer and normalisers, built from spec and params."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        spec: NetSpec | None = None,
        params: PPOParams | None = None,
        seed: int | None = 0,
    ) -> None:
        """`seed` draws the initial weights (orthogonal init); None skips those draws and
        keeps torch's default init, for a caller who loads every weight next
        (`agent_from_parts`)."""
        self.observation_space = observation_space
        self.action_space = action_space
        self.spec = spec or NetSpec()
        self.params = params or PPOParams()
        self.encoder = ObsEncoder(observation_space)
        self.action_spec = ActionSpec.from_space(action_space)
        self.device = torch.device("cpu")  # built on CPU so that init draws are device-free
        self.net = ActorCritic(self.spec, self.encoder.dim, self.action_spec,
                               None if seed is None else torch_generator(seed))
        self.head = PolicyHead(self.action_spec, self.net.sde_features)
        self.optimizer = self.make_optimizer()
        self.obs_norm = (
            ObsNormalizer(self.encoder.continuous) if self.params.normalize_obs else None
        )
        self.reward_scaler = (
            RewardScaler(self.params.gamma) if self.params.normalize_rewards else None
        )

    def to(self, device: str | torch.device) -> Agent:
        """Moves the network and Adam's moments to `device` (normalisers are numpy: host)."""
        self.device = torch.device(device)
        state = self.optimizer.state_dict()
        self.net.to(self.device)  # may replace the Parameter objects (e.g. for `meta`)
        self.optimizer = self.make_optimizer()
        # loading copies each moment and step count to its parameter's device
        self.optimizer.load_state_dict(state)
        return self

    def as_tensor(self, x: np.ndarray) -> torch.Tensor:
        """A host array as a tensor on the agent's device (no copy on CPU)."""
        return torch.from_numpy(x).to(self.device)

    def set_params(self, params: PPOParams) -> None:
        """Applies new hyperparameters to the live agent.

        The optimizer is kept, Adam's moments included (AgileRL rebuilds it on every lr mutation
        and so throws them away); a new `lr` takes effect at the next update (`apply_lr`).
        """
        self.params = params
        if self.reward_scaler is not None:
            self.reward_scaler.gamma = params.gamma

    def set_spec(self, spec: NetSpec, generator: torch.Generator) -> None:
        """Rebuilds the network for a new architecture, keeping the learned weights.

        Overlapping weights are copied by `transfer_weights`; the optimizer is rebuilt over every
        parameter of the new network (AgileRL #154 once left the critic out), keeping Adam's
        moments when no parameter changed shape.
        """
        new_net = ActorCritic(spec, self.encoder.dim, self.action_spec, generator).to(self.device)
        transfer_weights(self.net, new_net)
        same_shapes = _shapes(self.net) == _shapes(new_net)
        old_state = self.optimizer.state_dict()
        self.spec, self.net = spec, new_net
        self.head = PolicyHead(self.action_spec, new_net.sde_features)
        self.optimizer = self.make_optimizer()
        if same_shapes:  # e.g. an activation change: Adam's moments still fit every parameter
            self.optimizer.load_state_dict(old_state)

    def apply_lr(self, remaining: float = 1.0) -> float:
        """The one writer of the optimizer's learning rate: `params.lr`, scaled by the fraction
        of the budget `remaining` when the params anneal. Every update calls it first, so a
        mutation, a clone or a loaded file never leaves a stale rate behind."""
        lr = self.params.lr * (remaining if self.params.anneal else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def make_optimizer(self) -> FusedAdam:
        """A fresh Adam over every parameter of the current network: torch's fused kernel, one
        for every parameter (a quarter of the for-loop Adam's time on W1's small tensors)."""
        return FusedAdam(self.net.parameters(), lr=self.params.lr, eps=ADAM_EPS)

    def initial_state(self, n: int) -> torch.Tensor:
        """Zero recurrent state for n parallel episodes: `[C, layers, n, hidden]`, on the device."""
        return self.net.initial_state(n).to(self.device)

    def preprocess(self, obs: Any, update: bool) -> np.ndarray:
        """Encodes a batch of raw observations and normalises it (`update` moves the statistics)."""
        x = self.encoder(obs)
        return self.obs_norm(x, update) if self.obs_norm is not None else x

    @torch.inference_mode()
    def act(
        self,
        obs: Any,
        state: torch.Tensor,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[np.ndarray, torch.Tensor]:
        """Actions for a batch of observations, carrying the recurrent state.

        Pass `episode_start` (bool `[n]`) to reset the state of envs whose episode just began;
        normaliser statistics stay frozen. Stochastic actions need an explicit `generator`
        (no global RNG is ever used).
        """
        if not deterministic and generator is None:
            raise ValueError("stochastic actions need a torch.Generator (see evopop.seeding)")
        state = reset_state(state, episode_start)
        x = self.as_tensor(self.preprocess(obs, update=False))
        out, state = self.net.actor(x[None], state)
        actions = self.head.sample(out[0], self.net.log_std, deterministic, generator)
        return self.action_spec.to_env(actions.cpu().numpy()), state


def _shapes(net: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in net.named_parameters()]


def reset_state(state: torch.Tensor, episode_start: np.ndarray | None) -> torch.Tensor:
    """Zeroes the recurrent state of the envs whose episode starts now."""
    if episode_start is None or not episode_start.any():
        return state
    keep = torch.from_numpy(~episode_start).to(state.device, state.dtype)
    return state * keep[None, None, :, None]
