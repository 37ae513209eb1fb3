"""Weight transfer between actor-critics of different specs, so architecture mutations keep what
was learned.

Growth is function-preserving: every unit a mutation adds starts with zero *outgoing* weights
(the new input columns of whatever reads it), so the grown network computes exactly what the old
one did while its new units still receive gradient through those outgoing weights. Incoming
weights of new units keep the new module's random init (zero-incoming units would never learn).

Cases and their guarantees:

- More head nodes, or a larger recurrent hidden size (LSTM/GRU, any number of layers, shared or
  separate encoders): exact. Recurrent weights are copied per gate block, so growing H does not
  slide the f/g/o gates into the i block; the caller zero-pads the recurrent state.
- gSDE (`log_std` of shape `[features, action_dim]`): new latent features get log-std rows of
  `SILENT_LOG_STD`, so they add (numerically) no exploration variance. Exact to float tolerance,
  but those rows learn very slowly; exploration keeps flowing through the old features.
- New head layers beyond the old depth start as a (rectangular) identity with zero bias; the
  output layers are carried over. Exact when the activation leaves the previous layer's output
  unchanged: ReLU after a ReLU head layer (ReLU(x) = x for x >= 0). Not exact for tanh, ELU, GELU,
  SiLU, leaky ReLU, or for a first head layer on raw encoder features.
- Shrinking truncates (not function-preserving). Recurrent layers beyond the old `num_layers` keep
  their fresh init.
- Roles that do not match keep the new module's init: the encoder and the first layer that reads
  encoder features when the cell type differs (lstm/gru/none), and `log_std` when gSDE is toggled.
  Going from a shared to separate encoders seeds the critic's encoder with the old shared one
  (exact); going back keeps the actor's encoder.
"""

from __future__ import annotations

import torch
from torch import nn

from evopop.agents.networks import ActorCritic

SILENT_LOG_STD = -20.0
"""Log-std of gSDE rows for new latent features: exp(-40) keeps their variance below float noise."""


def transfer_weights(old: ActorCritic, new: ActorCritic) -> None:
    """Copies every overlapping block of `old`'s parameters into `new`, in place."""
    features_match = old.spec.cell is new.spec.cell
    with torch.no_grad():
        if features_match and new.rnn_actor is not None:
            _copy_rnn(old.rnn_actor, new.rnn_actor)
            if new.rnn_critic is not None:
                critic_src = old.rnn_actor if old.rnn_critic is None else old.rnn_critic
                _copy_rnn(critic_src, new.rnn_critic)
        _copy_chain(_chain(old.body_actor, old.pi), _chain(new.body_actor, new.pi), features_match)
        _copy_chain(_chain(old.body_critic, old.v), _chain(new.body_critic, new.v), features_match)
        _copy_log_std(old, new, features_match)


def _chain(body: nn.Sequential, out: nn.Linear) -> list[nn.Linear]:
    """The Linear layers of one head, output layer last."""
    return [m for m in body if isinstance(m, nn.Linear)] + [out]


def _copy_chain(old: list[nn.Linear], new: list[nn.Linear], features_match: bool) -> None:
    """Aligns head layers by depth and the output layers with each other.

    A new chain's first layer reads encoder features; if their role changed it keeps its init.
    """
    old_depth = len(old) - 1
    for i, layer in enumerate(new):
        is_output = i == len(new) - 1
        if i == 0 and not features_match:
            continue
        if is_output:
            _copy_linear(old[-1], layer)
        elif i < old_depth:
            _copy_linear(old[i], layer)
        else:
            _identity(layer)


def _copy_linear(src: nn.Linear, dst: nn.Linear) -> None:
    """Top-left block copy; inputs the old layer did not have get zero weight (function kept)."""
    rows = min(src.out_features, dst.out_features)
    cols = min(src.in_features, dst.in_features)
    dst.weight[:rows, :cols] = src.weight[:rows, :cols]
    dst.weight[:, src.in_features :] = 0.0
    dst.bias[:rows] = src.bias[:rows]


def _identity(dst: nn.Linear) -> None:
    """A fresh layer passes its input through; extra units keep random incoming weights."""
    n = min(dst.in_features, dst.out_features)
    dst.weight[:n] = 0.0
    dst.weight[:n, :n] = torch.eye(n, dtype=dst.weight.dtype)
    dst.bias[:n] = 0.0


def _copy_rnn(src: nn.Module, dst: nn.Module) -> None:
    """Copies each recurrent layer both modules have, gate block by gate block."""
    gates = 4 if isinstance(dst, nn.LSTM) else 3
    for name, param in dst.named_parameters():
        if hasattr(src, name):
            _copy_gated(getattr(src, name), param, gates, src.hidden_size, dst.hidden_size)


def _copy_gated(
    src: torch.Tensor, dst: torch.Tensor, gates: int, h_src: int, h_dst: int
) -> None:
    """Rows `[g*H : g*H + min(H)]` of every gate g; grown input columns (new units) get zero."""
    m = min(h_src, h_dst)
    for g in range(gates):
        rows_dst = slice(g * h_dst, g * h_dst + m)
        rows_src = slice(g * h_src, g * h_src + m)
        if dst.dim() == 1:
            dst[rows_dst] = src[rows_src]
        else:
            cols = min(src.shape[1], dst.shape[1])
            dst[rows_dst, :cols] = src[rows_src, :cols]
    if dst.dim() == 2:
        dst[:, src.shape[1] :] = 0.0


def _copy_log_std(old: ActorCritic, new: ActorCritic, features_match: bool) -> None:
    """State-independent log-std: overlap copy. gSDE: rows follow the latent features."""
    src, dst = old.log_std, new.log_std
    if src is None or dst is None or src.dim() != dst.dim():
        return
    if dst.dim() == 1:
        n = min(src.shape[0], dst.shape[0])
        dst[:n] = src[:n]
        return
    if not features_match and not new.spec.head:
        return
    rows = min(src.shape[0], dst.shape[0])
    cols = min(src.shape[1], dst.shape[1])
    dst[:rows, :cols] = src[:rows, :cols]
    dst[src.shape[0] :] = SILENT_LOG_STD
