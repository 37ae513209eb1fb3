"""Network and PPO hyperparameter specs: plain, frozen data that can travel between processes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any


class CellType(str, Enum):
    """Recurrent cell of the encoder; NONE gives a feed-forward agent."""

    LSTM = "lstm"
    GRU = "gru"
    NONE = "none"


class Activation(str, Enum):
    """Activation of the hidden layers of the actor and critic heads."""

    TANH = "tanh"
    RELU = "relu"
    ELU = "elu"
    GELU = "gelu"
    SILU = "silu"
    LEAKY_RELU = "leaky_relu"


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class NetSpec:
    """Architecture of a recurrent actor-critic.

    `shared_encoder=False` gives the actor and the critic their own recurrent encoder (sb3-contrib's
    `enable_critic_lstm`), which keeps value-loss gradients out of the policy's memory. `sde` turns
    on generalised state-dependent exploration for Box actions.
    """

    cell: CellType = CellType.LSTM
    hidden_size: int = 64
    num_layers: int = 1
    head: tuple[int, ...] = (64,)
    activation: Activation = Activation.TANH
    shared_encoder: bool = False
    log_std_init: float = 0.0
    sde: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", CellType(self.cell))
        object.__setattr__(self, "activation", Activation(self.activation))
        object.__setattr__(self, "head", tuple(self.head))
        _positive_int("hidden_size", self.hidden_size)
        _positive_int("num_layers", self.num_layers)
        for size in self.head:
            _positive_int("head layer size", size)

    @property
    def recurrent(self) -> bool:
        return self.cell is not CellType.NONE

    @property
    def state_channels(self) -> int:
        """Number of [layers, n, hidden] tensors in the recurrent state (h, c per encoder)."""
        per_encoder = {CellType.LSTM: 2, CellType.GRU: 1, CellType.NONE: 0}[self.cell]
        return per_encoder * (1 if self.shared_encoder else 2)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["cell"] = self.cell.value
        data["activation"] = self.activation.value
        data["head"] = list(self.head)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetSpec:
        return cls(**data)


@dataclass(frozen=True)
class PPOParams:
    """RL hyperparameters of one agent (the ones evolution mutates live here too).

    `learn_step` is steps per env per rollout; `batch_size` counts transitions per minibatch and is
    independent of the number of envs. `anneal` decays lr and clip_coef linearly to 0 over the
    training budget (rl-zoo's `lin_` schedules), which settles the final policy. With gSDE the
    exploration noise is redrawn every `sde_sample_freq` steps.
    """

    lr: float = 1e-3
    learn_step: int = 128
    batch_size: int = 256
    update_epochs: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    vf_clip: float | None = None
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    max_seq_len: int = 32
    norm_adv: bool = True
    normalize_obs: bool = True
    normalize_rewards: bool = True
    anneal: bool = False
    sde_sample_freq: int = 4

    def __post_init__(self) -> None:
        for name in ("learn_step", "batch_size", "update_epochs", "max_seq_len", "sde_sample_freq"):
            _positive_int(name, getattr(self, name))
        for name in ("lr", "clip_coef", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.ent_coef < 0 or self.vf_coef < 0:
            raise ValueError("ent_coef and vf_coef must be >= 0")
        for name in ("vf_clip", "target_kl"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or null, got {value!r}")

    def replace(self, **changes: Any) -> PPOParams:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOParams:
        return cls(**data)
