"""Recurrent actor-critic built from a `NetSpec`.

The recurrent state is one tensor `[C, layers, n, hidden]` whose C channels are (h, c) of each
encoder (LSTM) or h (GRU); a feed-forward spec has C = 0. One tensor keeps storage, masking at
episode starts and gathering per sequence uniform across cell types.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from evopop.agents.native import native_usable
from evopop.agents.native_gru import gru_native
from evopop.agents.native_lstm import lstm_native
from evopop.agents.spaces import ActionKind, ActionSpec
from evopop.agents.spec import Activation, CellType, NetSpec

ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    Activation.TANH: nn.Tanh,
    Activation.RELU: nn.ReLU,
    Activation.ELU: nn.ELU,
    Activation.GELU: nn.GELU,
    Activation.SILU: nn.SiLU,
    Activation.LEAKY_RELU: nn.LeakyReLU,
}


def _mlp(in_dim: int, sizes: tuple[int, ...], activation: Activation) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), ACTIVATIONS[activation]()]
        in_dim = size
    return nn.Sequential(*layers)


def _rnn(spec: NetSpec, in_dim: int) -> nn.Module | None:
    if spec.cell is CellType.LSTM:
        return nn.LSTM(in_dim, spec.hidden_size, spec.num_layers)
    if spec.cell is CellType.GRU:
        return nn.GRU(in_dim, spec.hidden_size, spec.num_layers)
    return None


def run_rnn(
    rnn: nn.Module | None, x: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs a whole sequence `[L, B, in]` through the cell from `state` `[c, layers, B, H]`."""
    if rnn is None:
        return x, state
    if x.shape[0] == 1:
        return _one_step(rnn, x, state)
    if native_usable(x, x.shape[0]):
        return _native(rnn, x, state)
    if isinstance(rnn, nn.LSTM):
        out, (h, c) = rnn(x, (state[0].contiguous(), state[1].contiguous()))
        return out, torch.stack((h, c))
    out, h = rnn(x, state[0].contiguous())
    return out, h.unsqueeze(0)


def _native(rnn: nn.Module, x: torch.Tensor, state: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """`run_rnn` through the C loops as a population of one, layer by layer
    (`evopop.agents.native_lstm`, `native_gru`): faster than `nn.LSTM`/`nn.GRU` on CPU; the
    weights stay the module's own parameters (viewed with a member axis), so their gradients
    land there."""
    out, new = x.unsqueeze(0), []
    for layer, weights in enumerate(rnn.all_weights):
        member = [w.unsqueeze(0) for w in weights]
        if isinstance(rnn, nn.LSTM):
            out, h, c = lstm_native(out, state[0, layer].unsqueeze(0),
                                    state[1, layer].unsqueeze(0), *member)
            new.append(torch.stack((h[0], c[0])))
        else:
            out, h = gru_native(out, state[0, layer].unsqueeze(0), *member)
            new.append(h)
    return out[0], torch.stack(new, dim=1)


def _one_step(rnn: nn.Module, x: torch.Tensor, state: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step through torch's fused cell op, layer by layer: a collection step (the hot loop)
    costs about half of a length-1 `nn.LSTM` call (33 vs 62 us for W1's 16 envs,
    `benchmarks/recurrent_step.py`)."""
    out, new = x[0], []
    for layer, weights in enumerate(rnn.all_weights):  # [w_ih, w_hh, b_ih, b_hh] per layer
        if isinstance(rnn, nn.LSTM):
            h, c = torch.lstm_cell(out, (state[0, layer], state[1, layer]), *weights)
            new.append(torch.stack((h, c)))
        else:
            h = torch.gru_cell(out, state[0, layer], *weights)
            new.append(h[None])
        out = h
    return out[None], torch.stack(new, dim=1)


class ActorCritic(nn.Module):
    """Actor and critic, each an optional recurrent encoder followed by an MLP head."""

    def __init__(
        self, spec: NetSpec, obs_dim: int, action: ActionSpec, generator: torch.Generator | None
    ) -> None:
        """`generator` draws the initial weights; None skips our init draws, for a net whose
        every weight is loaded next (an agent file, a worker's bytes): they were 70 % of
        rebuilding a W1 agent from its bytes, which the generation loop does for each member."""
        super().__init__()
        self.spec = spec
        self.obs_dim = obs_dim
        self.action = action
        feat = spec.hidden_size if spec.recurrent else obs_dim
        self.rnn_actor = _rnn(spec, obs_dim)
        self.rnn_critic = None if spec.shared_encoder else _rnn(spec, obs_dim)
        self.body_actor = _mlp(feat, spec.head, spec.activation)
        self.body_critic = _mlp(feat, spec.head, spec.activation)
        head_dim = spec.head[-1] if spec.head else feat
        self.pi = nn.Linear(head_dim, action.logits_dim)
        self.v = nn.Linear(head_dim, 1)
        self.sde_features = head_dim if spec.sde and action.kind is ActionKind.CONTINUOUS else 0
        if action.kind is ActionKind.CONTINUOUS:
            dim = action.action_dim
            shape = (self.sde_features, dim) if self.sde_features else (dim,)
            self.log_std = nn.Parameter(torch.full(shape, spec.log_std_init))
        else:
            self.register_parameter("log_std", None)
        if generator is not None:
            self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Orthogonal init (CleanRL's recipe) drawn from an explicit generator."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.orthogonal_(module.weight, math.sqrt(2.0), generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LSTM, nn.GRU)):
                for name, param in module.named_parameters():
                    if name.startswith("weight"):
                        nn.init.orthogonal_(param, 1.0, generator=generator)
                    else:
                        nn.init.zeros_(param)
        nn.init.orthogonal_(self.pi.weight, 0.01, generator=generator)
        nn.init.orthogonal_(self.v.weight, 1.0, generator=generator)

    def initial_state(self, n: int) -> torch.Tensor:
        s = self.spec
        if not s.recurrent:
            return torch.zeros(0, 1, n, 1)
        return torch.zeros(s.state_channels, s.num_layers, n, s.hidden_size)

    def _split(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rnn_critic is None:
            return state, state
        half = state.shape[0] // 2
        return state[:half], state[half:]

    def forward(
        self, obs: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """obs `[L, B, obs_dim]`, state `[C, layers, B, H]` -> (actor out `[L, B, out_dim]`,
        values `[L, B]`, final state)."""
        state_a, state_c = self._split(state)
        feat_a, new_a = run_rnn(self.rnn_actor, obs, state_a)
        if self.rnn_critic is None:
            feat_c, new_state = feat_a, new_a
        else:
            feat_c, new_c = run_rnn(self.rnn_critic, obs, state_c)
            new_state = torch.cat((new_a, new_c))
        value = self.v(self.body_critic(feat_c)).squeeze(-1)
        return self._actor_out(feat_a), value, new_state

    def _actor_out(self, feat: torch.Tensor) -> torch.Tensor:
        """Policy head output; with gSDE the detached latent features follow the mean."""
        latent = self.body_actor(feat)
        out = self.pi(latent)
        return torch.cat((out, latent.detach()), dim=-1) if self.sde_features else out

    def value(self, obs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Critic only: values `[L, B]` (used to bootstrap truncated episodes)."""
        _, state_c = self._split(state)
        rnn = self.rnn_actor if self.rnn_critic is None else self.rnn_critic
        feat, _ = run_rnn(rnn, obs, state_c)
        return self.v(self.body_critic(feat)).squeeze(-1)

    def actor(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actor only, for inference: (out `[L, B, logits]`, new state with critic part kept)."""
        state_a, state_c = self._split(state)
        feat, new_a = run_rnn(self.rnn_actor, obs, state_a)
        new_state = new_a if self.rnn_critic is None else torch.cat((new_a, state_c))
        return self._actor_out(feat), new_state


def parameter_count(spec: NetSpec, obs_dim: int, action: ActionSpec) -> int:
    """Parameters of one actor-critic of `spec` (recurrent encoders, heads, outputs), exactly as
    `ActorCritic` builds it, computed without building it."""
    gates = {CellType.LSTM: 4, CellType.GRU: 3, CellType.NONE: 0}[spec.cell]
    hidden = spec.hidden_size
    encoder = sum(gates * hidden * ((obs_dim if layer == 0 else hidden) + hidden + 2)
                  for layer in range(spec.num_layers))
    features = hidden if spec.recurrent else obs_dim
    head, width = 0, features
    for size in spec.head:
        head += (width + 1) * size
        width = size
    encoders = 1 if spec.shared_encoder else 2
    outputs = (width + 1) * (action.logits_dim + 1)  # policy and value layers
    if action.kind is ActionKind.CONTINUOUS:
        outputs += action.action_dim * (width if spec.sde else 1)  # log-std
    return encoders * encoder + 2 * head + outputs
