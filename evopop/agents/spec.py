"""Network and PPO hyperparameter specs: plain, frozen data that can travel between processes."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
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


MAX_WIDTH = 4096
"""Largest recurrent hidden size or head layer: far beyond what small recurrent RL nets use, and
small enough that no spec (from a config or a crafted agent file) can ask for gigabytes."""
MAX_LAYERS = 8
"""Most stacked recurrent layers, and most head layers."""
MAX_STEPS_PER_ROLLOUT = 1 << 16
"""Bound on `learn_step`, `batch_size` and `max_seq_len` for the same reason."""


def _positive_int(name: str, value: Any, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {high}, got {value}")
    return value


def _finite(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class NetSpec:
    """Architecture of a recurrent actor-critic.

    `shared_encoder=False` gives the actor and the critic their own recurrent encoder (sb3-contrib's
    `enable_critic_lstm`), which keeps value-loss gradients out of the policy's memory. `sde` turns
    on generalised state-dependent exploration for Box actions.
    """

    cell: CellType = field(
        default=CellType.LSTM, metadata={"doc": "recurrent cell: lstm, gru or none (feed-forward)"}
    )
    hidden_size: int = field(default=64, metadata={"doc": "recurrent hidden size"})
    num_layers: int = field(default=1, metadata={"doc": "stacked recurrent layers"})
    head: tuple[int, ...] = field(
        default=(64,), metadata={"doc": "hidden layer sizes of the actor and critic heads"}
    )
    activation: Activation = field(
        default=Activation.TANH, metadata={"doc": "activation of the head layers"}
    )
    shared_encoder: bool = field(
        default=False, metadata={"doc": "one recurrent encoder for actor and critic"}
    )
    log_std_init: float = field(
        default=0.0, metadata={"doc": "initial log-std of the Gaussian policy (Box actions)"}
    )
    sde: bool = field(
        default=False, metadata={"doc": "generalised state-dependent exploration (Box actions)"}
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", CellType(self.cell))
        object.__setattr__(self, "activation", Activation(self.activation))
        object.__setattr__(self, "head", tuple(self.head))
        _positive_int("hidden_size", self.hidden_size, MAX_WIDTH)
        _positive_int("num_layers", self.num_layers, MAX_LAYERS)
        if len(self.head) > MAX_LAYERS:
            raise ValueError(f"head has {len(self.head)} layers; at most {MAX_LAYERS}")
        for size in self.head:
            _positive_int("head layer size", size, MAX_WIDTH)
        _finite("log_std_init", self.log_std_init)

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

    lr: float = field(default=1e-3, metadata={"doc": "Adam learning rate"})
    learn_step: int = field(default=128, metadata={"doc": "steps per env per rollout"})
    batch_size: int = field(
        default=256, metadata={"doc": "transitions per minibatch (independent of num_envs)"}
    )
    update_epochs: int = field(  # 10 beat 4 on 8 of 11 tasks: benchmarks/defaults_study.py
        default=10, metadata={"doc": "passes over each rollout"})
    gamma: float = field(default=0.99, metadata={"doc": "discount"})
    gae_lambda: float = field(default=0.95, metadata={"doc": "GAE lambda"})
    clip_coef: float = field(default=0.2, metadata={"doc": "policy ratio clip"})
    vf_clip: float | None = field(default=None, metadata={"doc": "value clip (null: none)"})
    ent_coef: float = field(default=0.0, metadata={"doc": "entropy bonus weight"})
    vf_coef: float = field(default=0.5, metadata={"doc": "value-loss weight"})
    max_grad_norm: float = field(default=0.5, metadata={"doc": "gradient-norm clip"})
    target_kl: float | None = field(
        default=None, metadata={"doc": "stop the update when approx. KL > 1.5 x this"}
    )
    max_seq_len: int = field(default=32, metadata={"doc": "truncated-BPTT sequence length"})
    norm_adv: bool = field(default=True, metadata={"doc": "per-minibatch advantage normalisation"})
    normalize_obs: bool = field(
        default=True, metadata={"doc": "running observation normalisation (part of the agent)"}
    )
    normalize_rewards: bool = field(
        default=True, metadata={"doc": "scale rewards by the running std of the return"}
    )
    anneal: bool = field(
        default=False, metadata={"doc": "decay lr and clip_coef linearly to 0 over the budget"}
    )
    sde_sample_freq: int = field(default=4, metadata={"doc": "steps between gSDE noise redraws"})

    def __post_init__(self) -> None:
        for name in ("learn_step", "batch_size", "update_epochs", "max_seq_len", "sde_sample_freq"):
            _positive_int(name, getattr(self, name), MAX_STEPS_PER_ROLLOUT)
        for name in ("lr", "gamma", "gae_lambda", "clip_coef", "ent_coef", "vf_coef",
                     "max_grad_norm"):
            _finite(name, getattr(self, name))
        for name in ("vf_clip", "target_kl"):
            if getattr(self, name) is not None:
                _finite(name, getattr(self, name))
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
