"""The policy part of an agent as one self-contained module that TorchScript and ONNX can hold.

An exported policy maps a batch of raw env observations and the actor's recurrent state to env
actions and the next state: the observation encoding (one-hot codes for Discrete and
MultiDiscrete observations), the frozen normaliser and the action mapping (Box clipping,
categorical argmax plus the space's `start`) are part of the graph, so nothing of evopop is
needed to run it. The critic is left out: it never decides an action.

Every step computes what `Agent.act` computes, op for op: normalisation in float64 as numpy does
it (so its result is bit-identical), the same cells, and in `sample` the same random draws in
the same order from the caller's generator, so a generator seeded like evopop's gives evopop's
stochastic actions.
"""

# no `from __future__ import annotations`: TorchScript reads these annotations at run time

import copy

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from evopop.agents.agent import Agent
from evopop.agents.spaces import ActionKind
from evopop.agents.spec import CellType
from evopop.export.formats import ExportError

OBS_SPACES = (spaces.Box, spaces.MultiBinary, spaces.Discrete, spaces.MultiDiscrete)
"""Observation spaces an exported policy reads as one input tensor."""


def is_categorical(space: spaces.Space) -> bool:
    """Discrete and MultiDiscrete observations enter as int64 codes, everything else as
    float32."""
    return isinstance(space, (spaces.Discrete, spaces.MultiDiscrete))


class ObsInput(nn.Module):
    """Raw observations `[B, *shape]` to the normalised float32 features `[B, dim]` the network
    reads: flattened (Box, MultiBinary) or one-hot coded (Discrete, MultiDiscrete), then
    standardised and clipped as `ObsNormalizer` does, in float64."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        space = agent.observation_space
        if not isinstance(space, OBS_SPACES):
            raise ExportError(f"cannot export an agent observing {space}: exported policies "
                              "read Box, MultiBinary, Discrete or MultiDiscrete observations")
        self.categorical = is_categorical(space)
        component, value, start = _one_hot_layout(space)
        # one-hot column j is (code of component[j] - start[component[j]] == value[j])
        self.register_buffer("component", torch.from_numpy(component))
        self.register_buffer("value", torch.from_numpy(value))
        self.register_buffer("start", torch.from_numpy(start))
        dim = agent.encoder.dim
        mean, std = np.zeros(dim), np.ones(dim)
        norm = agent.obs_norm
        self.normalize = norm is not None and len(norm.columns) > 0
        self.clip = float(norm.clip) if norm is not None else 0.0
        if norm is not None:
            mean[norm.columns] = norm.rms.mean
            std[norm.columns] = np.sqrt(norm.rms.var + norm.eps)
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float64)))
        self.register_buffer("std", torch.from_numpy(std.astype(np.float64)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        flat = obs.reshape(obs.shape[0], -1)
        if self.categorical:
            codes = flat - self.start
            x = (codes[:, self.component] == self.value).to(torch.float32)
        else:
            x = flat.to(torch.float32)
        if not self.normalize:
            return x
        # columns that are not normalised have mean 0 and std 1: their 0/1 codes pass exactly
        scaled = (x.to(torch.float64) - self.mean) / self.std
        return scaled.clamp(-self.clip, self.clip).to(torch.float32)


def _one_hot_layout(space: spaces.Space) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(component, value) of each one-hot column and each component's start, as int64; empty
    for spaces that are not coded."""
    if isinstance(space, spaces.Discrete):
        nvec, start = np.array([space.n]), np.array([space.start])
    elif isinstance(space, spaces.MultiDiscrete):
        nvec, start = space.nvec.reshape(-1), space.start.reshape(-1)
    else:
        nvec, start = np.zeros(0, np.int64), np.zeros(0, np.int64)
    component = np.repeat(np.arange(len(nvec)), nvec)
    value = np.concatenate([np.arange(k) for k in nvec]) if len(nvec) else np.zeros(0)
    return component.astype(np.int64), value.astype(np.int64), start.astype(np.int64)


class BoxActions(nn.Module):
    """Gaussian policy output to Box actions: the mean (deterministic) or a sample, clipped to
    the space's bounds and shaped like it."""

    shape: list[int]

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        spec = agent.action_spec
        self.pi = copy.deepcopy(agent.net.pi)
        self.shape = [-1, *spec.shape]  # a batch of env actions
        self.sde = agent.net.sde_features > 0
        self.register_buffer("low", torch.tensor(spec.low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(spec.high, dtype=torch.float32))
        self.register_buffer("log_std", agent.net.log_std.detach().cpu().clone())

    def _to_env(self, actions: torch.Tensor) -> torch.Tensor:
        clipped = torch.maximum(torch.minimum(actions, self.high), self.low)
        return clipped.reshape(self.shape)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self._to_env(self.pi(latent))

    def sample(self, latent: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = self.pi(latent)
        if self.sde:  # gSDE: fresh exploration matrices every call, as `Agent.act` draws them
            noise = torch.randn([latent.shape[0], self.log_std.shape[0], self.log_std.shape[1]],
                                generator=generator, dtype=self.log_std.dtype)
            noise = noise * self.log_std.exp()
            return self._to_env(mean + (latent.unsqueeze(-2) @ noise).squeeze(-2))
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return self._to_env(mean + eps * self.log_std.exp().expand(mean.shape))


class CategoricalActions(nn.Module):
    """Logits to Discrete / MultiDiscrete actions: argmax (deterministic) or a Gumbel-max
    sample per component, plus the space's `start`, as int64 shaped like the space."""

    splits: list[int]
    shape: list[int]

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        spec = agent.action_spec
        self.pi = copy.deepcopy(agent.net.pi)
        self.splits = list(spec.nvec)
        self.gumbel_eps = 1e-20  # as `PolicyHead.sample` (an attribute: TorchScript)
        self.shape = [-1, *spec.shape]  # a batch of env actions
        self.register_buffer("start", torch.tensor(spec.start, dtype=torch.int64))

    def _to_env(self, picks: list[torch.Tensor]) -> torch.Tensor:
        return (torch.stack(picks, dim=-1) + self.start).reshape(self.shape)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        logits = self.pi(latent)
        return self._to_env([part.argmax(-1) for part in torch.split(logits, self.splits, -1)])

    def sample(self, latent: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        picks: list[torch.Tensor] = []
        for part in torch.split(self.pi(latent), self.splits, -1):
            u = torch.rand(part.shape, generator=generator, dtype=part.dtype)
            picks.append((part - torch.log(-torch.log(u.clamp_min(self.gumbel_eps)))).argmax(-1))
        return self._to_env(picks)


def _actions(agent: Agent) -> nn.Module:
    if agent.action_spec.kind is ActionKind.CONTINUOUS:
        return BoxActions(agent)
    return CategoricalActions(agent)


class LSTMPolicy(nn.Module):
    """`forward(obs, h, c) -> (action, h, c)`; `sample(obs, h, c, generator)` likewise.
    h and c are `[layers, B, hidden]`; zeros start an episode."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.obs_input = ObsInput(agent)
        self.rnn = copy.deepcopy(agent.net.rnn_actor)
        self.body = copy.deepcopy(agent.net.body_actor)
        self.actions = _actions(agent)

    def _latent(self, obs: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, (h, c) = self.rnn(self.obs_input(obs).unsqueeze(0), (h, c))
        return self.body(out[0]), h, c

    def forward(self, obs: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent, h, c = self._latent(obs, h, c)
        return self.actions(latent), h, c

    @torch.jit.export
    def sample(self, obs: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent, h, c = self._latent(obs, h, c)
        return self.actions.sample(latent, generator), h, c


class GRUPolicy(nn.Module):
    """`forward(obs, h) -> (action, h)`; `sample(obs, h, generator)` likewise. h is
    `[layers, B, hidden]`; zeros start an episode."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.obs_input = ObsInput(agent)
        self.rnn = copy.deepcopy(agent.net.rnn_actor)
        self.body = copy.deepcopy(agent.net.body_actor)
        self.actions = _actions(agent)

    def _latent(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.rnn(self.obs_input(obs).unsqueeze(0), h)
        return self.body(out[0]), h

    def forward(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latent, h = self._latent(obs, h)
        return self.actions(latent), h

    @torch.jit.export
    def sample(self, obs: torch.Tensor, h: torch.Tensor, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
        latent, h = self._latent(obs, h)
        return self.actions.sample(latent, generator), h


class FeedForwardPolicy(nn.Module):
    """`forward(obs) -> action`; `sample(obs, generator)`. No state."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.obs_input = ObsInput(agent)
        self.body = copy.deepcopy(agent.net.body_actor)
        self.actions = _actions(agent)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actions(self.body(self.obs_input(obs)))

    @torch.jit.export
    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.actions.sample(self.body(self.obs_input(obs)), generator)


_POLICIES: dict[CellType, type[nn.Module]] = {
    CellType.LSTM: LSTMPolicy,
    CellType.GRU: GRUPolicy,
    CellType.NONE: FeedForwardPolicy,
}

STATE_NAMES: dict[CellType, tuple[str, ...]] = {
    CellType.LSTM: ("h", "c"),
    CellType.GRU: ("h",),
    CellType.NONE: (),
}
"""The recurrent-state inputs of each cell's policy, in argument order; outputs add `_out`."""


def build_policy(agent: Agent) -> nn.Module:
    """The agent's policy as a CPU float32 module in eval mode, detached from the agent."""
    policy = _POLICIES[agent.spec.cell](agent).to("cpu").eval()
    for param in policy.parameters():
        param.requires_grad_(False)
    return policy


def example_inputs(agent: Agent, batch: int) -> tuple[torch.Tensor, ...]:
    """Zero inputs of the policy's forward for `batch` envs (observation, then states)."""
    space = agent.observation_space
    dtype = torch.int64 if is_categorical(space) else torch.float32
    obs = torch.zeros((batch, *space.shape), dtype=dtype)
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
        obs = obs + torch.as_tensor(np.asarray(space.start), dtype=torch.int64)
    spec = agent.spec
    states = [torch.zeros(spec.num_layers, batch, spec.hidden_size)
              for _ in STATE_NAMES[spec.cell]]
    return (obs, *states)
