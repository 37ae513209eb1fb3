"""`StackedNet`: the parameters of P `ActorCritic`s of one spec, stacked on a member axis.

Parameters keep the member net's names and per-member layout (`name -> [P, *member shape]`), so
stacking, unstacking and Adam's moments map one to one onto each member's own tensors. They are
views of one `[P, D]` buffer (`StackedNet.flat`, member p's parameters in row p), so that
clipping and Adam run as a handful of ops on the whole population instead of a dozen per
parameter (`evopop.batched.adam`). Shapes are member-major: observations `[P, L, B, obs_dim]`;
the recurrent state `[C, layers, P, B, H]` is a member's `[C, layers, B, H]` with the member
axis inserted before the batch axis.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from evopop.agents.native import native_available
from evopop.agents.native_gru import gru_native_step
from evopop.agents.native_lstm import lstm_native_step
from evopop.agents.native_weights import StepWeights
from evopop.agents.networks import ACTIVATIONS, ActorCritic
from evopop.agents.spaces import ActionSpec
from evopop.agents.spec import Activation, CellType, NetSpec
from evopop.batched.cells import fast_tanh, gru_layer, linear, lstm_layer
from evopop.batched.padding import crop, gate_blocks, place, widest

Tensor = torch.Tensor


@dataclass(frozen=True)
class ParamLayout:
    """Where each member parameter sits in a row of a `[P, D]` buffer: `nn.Module.parameters()`
    order, each flattened (`nn.utils.parameters_to_vector`'s layout)."""

    shapes: dict[str, tuple[int, ...]]  # name -> member shape, in the member's order
    width: int  # D: a member's parameter count

    @classmethod
    def widest(cls, nets: list[ActorCritic]) -> ParamLayout:
        """The layout of nets of one structure at their largest size in every dimension."""
        shapes = {}
        for name, _ in nets[0].named_parameters():
            sizes = [net.get_parameter(name).shape for net in nets]
            shapes[name] = tuple(max(dims) for dims in zip(*sizes, strict=True))
        return cls(shapes, sum(math.prod(shape) for shape in shapes.values()))

    def views(self, flat: Tensor) -> dict[str, Tensor]:
        """`flat [P, D]` as `name -> [P, *shape]` views (strided: rows are D apart)."""
        views, start = {}, 0
        for name, shape in self.shapes.items():
            end = start + math.prod(shape)
            views[name] = flat[:, start:end].view(flat.shape[0], *shape)
            start = end
        return views


@dataclass
class StackedNet:
    """P actor-critics as one set of stacked leaf tensors and a functional forward."""

    spec: NetSpec
    obs_dim: int
    action: ActionSpec
    sde_features: int
    layout: ParamLayout
    flat: Tensor  # [P, D]: every member's parameters, row p member p's
    params: dict[str, Tensor]  # member parameter name -> [P, *shape] view of `flat`
    # (encoders, layer) -> (`flat`'s version, the layer's weights for the C step)
    _steps: dict[tuple[tuple[str, ...], int], tuple[int, StepWeights]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def stack(cls, nets: list[ActorCritic], like: StackedNet | None = None) -> StackedNet:
        """Copies the members' weights into one new `[P, D]` buffer whose per-parameter views
        are the stack's leaves (requires_grad), at the members' widest widths (`padding`) or at
        `like`'s."""
        spec = like.spec if like else widest([net.spec for net in nets])
        layout = like.layout if like else ParamLayout.widest(nets)
        flat = torch.zeros(len(nets), layout.width)
        views = layout.views(flat)
        for p, net in enumerate(nets):
            for name, param in net.named_parameters():
                place(views[name][p], param.detach(), gate_blocks(name, spec))
        return cls._of(nets[0], layout, flat, requires_grad=True, spec=spec)

    @classmethod
    def _of(cls, like: ActorCritic | StackedNet, layout: ParamLayout, flat: Tensor,
            requires_grad: bool, spec: NetSpec | None = None) -> StackedNet:
        params = {name: view.requires_grad_(requires_grad)
                  for name, view in layout.views(flat).items()}
        return cls(spec or like.spec, like.obs_dim, like.action, like.sde_features, layout, flat,
                   params)

    @property
    def size(self) -> int:
        return self.flat.shape[0]

    def select(self, index: Tensor) -> StackedNet:
        """The stack of members `index` (int64 `[K]`) only, as new tensors: a batched step that
        no longer needs some members stops paying for them."""
        return StackedNet._of(self, self.layout, self.flat.index_select(0, index),
                              requires_grad=False)

    def write_back(self, nets: list[ActorCritic]) -> None:
        """Copies member p's slice of every stacked parameter (cropped to its widths) into
        `nets[p]` in place."""
        with torch.no_grad():
            for p, net in enumerate(nets):
                for name, param in net.named_parameters():
                    param.copy_(crop(self.params[name][p], tuple(param.shape),
                                     gate_blocks(name, self.spec)))

    def initial_state(self, n: int) -> Tensor:
        """Zero state for n envs per member: `[C, layers, P, n, H]` (`[0, 1, P, n, 1]` if FF)."""
        s = self.spec
        if not s.recurrent:
            return torch.zeros(0, 1, self.size, n, 1)
        return torch.zeros(s.state_channels, s.num_layers, self.size, n, s.hidden_size)

    def forward(self, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """obs `[P, L, B, obs_dim]`, state `[C, layers, P, B, H]` -> (actor out `[P, L, B, out]`,
        values `[P, L, B]`, final state), as each member's `ActorCritic.forward`."""
        if self.spec.shared_encoder or not self.spec.recurrent:
            feat_a, new_state = self._encode(("rnn_actor",), obs, state)
            feat_c = feat_a
        else:
            # Both encoders run as one stack of 2P members: half the per-step ops.
            state_a, state_c = self._split(state)
            both = torch.cat((state_a, state_c), dim=2)  # [c, layers, 2P, B, H]
            feat, new = self._encode(("rnn_actor", "rnn_critic"), torch.cat((obs, obs)), both)
            feat_a, feat_c = feat.chunk(2)  # [2P, L, B, H] -> 2 x [P, L, B, H]
            new_state = torch.cat(new.chunk(2, dim=2))  # actor's channels, then the critic's
        return self._actor_out(feat_a), self._critic_out(feat_c), new_state

    def actor(self, obs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Actor only (evaluation): (out `[P, L, B, out]`, new state with the critic's part
        kept), as each member's `ActorCritic.actor`; the critic's head and encoder do not run."""
        state_a, state_c = self._split(state)
        feat, new_a = self._encode(("rnn_actor",), obs, state_a)
        shared = self.spec.shared_encoder or not self.spec.recurrent
        return self._actor_out(feat), new_a if shared else torch.cat((new_a, state_c))

    def value(self, obs: Tensor, state: Tensor) -> Tensor:
        """Critic only: values `[P, L, B]` (bootstrap of truncated episodes)."""
        _, state_c = self._split(state)
        name = "rnn_actor" if self.spec.shared_encoder else "rnn_critic"
        feat, _ = self._encode((name,), obs, state_c)
        return self._critic_out(feat)

    def log_std_for(self, out: Tensor) -> Tensor | None:
        """log_std `[P, ...]` viewed to broadcast against actor outputs `[P, ..., out]` the way
        `PolicyHead` combines a member's log_std with `[..., out]` (None for categorical)."""
        log_std = self.params.get("log_std")
        if log_std is None:
            return None
        ones = [1] * (out.dim() - log_std.dim())
        return log_std.view(log_std.shape[0], *ones, *log_std.shape[1:])

    def _split(self, state: Tensor) -> tuple[Tensor, Tensor]:
        if self.spec.shared_encoder or not self.spec.recurrent:
            return state, state
        half = state.shape[0] // 2
        return state[:half], state[half:]

    def _encode(
        self, prefixes: tuple[str, ...], x: Tensor, state: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Runs encoders `prefixes`, their members stacked in that order, over `x [kP, L, B, in]`
        from `state [c, layers, kP, B, H]` -> (features `[kP, L, B, H]`, new state)."""
        cell = self.spec.cell
        if cell is CellType.NONE:
            return x, state
        finals = []
        for k in range(self.spec.num_layers):
            if cell is CellType.LSTM:
                x, h, c = self._lstm(prefixes, k, x, state[0, k], state[1, k])
                finals.append(torch.stack((h, c)))  # [2, kP, B, H]
            else:
                x, h = self._gru(prefixes, k, x, state[0, k])
                finals.append(h.unsqueeze(0))  # [1, kP, B, H]
        return x, torch.stack(finals, dim=1)  # [c, layers, kP, B, H]

    def _lstm(self, prefixes: tuple[str, ...], k: int, x: Tensor, h: Tensor,
              c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """LSTM layer k: a single step without gradients in C on prepared weights, else
        `lstm_layer`."""
        if self._steps_in_c(x):
            h, c = lstm_native_step(x[:, 0], h, c, self._step_weights(prefixes, k))
            return h.unsqueeze(1), h, c
        return lstm_layer(x, h, c, *self._layer_weights(prefixes, k))

    def _gru(self, prefixes: tuple[str, ...], k: int, x: Tensor,
             h: Tensor) -> tuple[Tensor, Tensor]:
        """GRU layer k, as `_lstm`."""
        if self._steps_in_c(x):
            h = gru_native_step(x[:, 0], h, self._step_weights(prefixes, k))
            return h.unsqueeze(1), h
        return gru_layer(x, h, *self._layer_weights(prefixes, k))

    def _layer_weights(self, prefixes: tuple[str, ...], k: int) -> list[Tensor]:
        return [self._weight(prefixes, f"{kind}_l{k}")
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    @staticmethod
    def _steps_in_c(x: Tensor) -> bool:
        """A single step without gradients (collection, evaluation) runs in C, its weights
        prepared once for the steps that follow (`_step_weights`)."""
        return x.shape[1] == 1 and not torch.is_grad_enabled() and native_available(x)

    def _step_weights(self, prefixes: tuple[str, ...], k: int) -> StepWeights:
        """Layer k's prepared weights, made again only when the parameters changed (`flat`'s
        version counter: torch's in-place ops on it or its views bump it, and `StackedAdam`
        bumps it after its fused kernel, which does not): a rollout or an evaluation prepares
        them once. A stack made in inference mode has no counter: such a stack (evaluation's)
        must not be written in place."""
        version = 0 if torch.is_inference(self.flat) else self.flat._version
        cached = self._steps.get((prefixes, k))
        if cached is None or cached[0] != version:
            prepare = StepWeights.lstm if self.spec.cell is CellType.LSTM else StepWeights.gru
            cached = (version, prepare(*self._layer_weights(prefixes, k)))
            self._steps[(prefixes, k)] = cached
        return cached[1]

    def _weight(self, prefixes: tuple[str, ...], name: str) -> Tensor:
        tensors = [self.params[f"{prefix}.{name}"] for prefix in prefixes]
        return tensors[0] if len(tensors) == 1 else torch.cat(tensors)

    def _mlp(self, prefix: str, x: Tensor) -> Tensor:
        activation = _activation(self.spec.activation)
        for i in range(len(self.spec.head)):
            x = linear(x, self.params[f"{prefix}.{2 * i}.weight"],
                       self.params[f"{prefix}.{2 * i}.bias"], activation)
        return x

    def _actor_out(self, feat: Tensor) -> Tensor:
        latent = self._mlp("body_actor", feat)
        out = linear(latent, self.params["pi.weight"], self.params["pi.bias"])
        return torch.cat((out, latent.detach()), dim=-1) if self.sde_features else out

    def _critic_out(self, feat: Tensor) -> Tensor:
        latent = self._mlp("body_critic", feat)
        return linear(latent, self.params["v.weight"], self.params["v.bias"]).squeeze(-1)


@functools.cache
def _activation(kind: Activation) -> Callable[[Tensor], Tensor]:
    """The heads' activation, as `linear` applies it to its matmul's output: ReLU in place
    (the matmul's backward does not keep its output, and the `[P, L, B, width]` activations are
    the update's largest tensors: one pass over memory less), tanh as `fast_tanh`, else the
    member's own module."""
    if kind is Activation.RELU:
        return torch.relu_
    if kind is Activation.TANH:
        return fast_tanh
    return ACTIVATIONS[kind]()
