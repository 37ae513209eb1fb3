"""Observation encoding and action distributions for the supported Gymnasium spaces.

Distributions are computed by hand rather than with `torch.distributions`: building those objects
costs hundreds of microseconds per call, which dominates the per-step collection path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from evopop.errors import UserError

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class UnsupportedSpaceError(UserError):
    """An observation or action space the agent cannot encode or act in."""
_SDE_EPS = 1e-6


class ObsEncoder:
    """Flattens a batch of observations to float32 `[n, dim]`.

    Box and MultiBinary are flattened, Discrete and MultiDiscrete become one-hot, Dict and Tuple are
    concatenated in space order. `continuous` marks the Box-derived columns: only those are
    normalised (normalising a one-hot code would only blur it).
    """

    def __init__(self, space: spaces.Space) -> None:
        self.space = space
        widths, continuous = [], []
        for leaf in _leaves(space):
            width = _leaf_width(leaf)
            widths.append(width)
            continuous.append(np.full(width, isinstance(leaf, spaces.Box)))
        self.dim = int(sum(widths))
        self.continuous = np.concatenate(continuous) if continuous else np.zeros(0, bool)

    def __call__(self, obs: Any) -> np.ndarray:
        parts = [_encode_leaf(leaf, value) for leaf, value in _zip_leaves(self.space, obs)]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return np.ascontiguousarray(out, dtype=np.float32)


def _leaves(space: spaces.Space) -> list[spaces.Space]:
    if isinstance(space, spaces.Dict):
        return [leaf for sub in space.spaces.values() for leaf in _leaves(sub)]
    if isinstance(space, spaces.Tuple):
        return [leaf for sub in space.spaces for leaf in _leaves(sub)]
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        return [space]
    raise UnsupportedSpaceError(f"unsupported observation space: {space}")


def _zip_leaves(space: spaces.Space, obs: Any) -> list[tuple[spaces.Space, Any]]:
    if isinstance(space, spaces.Dict):
        return [pair for key, sub in space.spaces.items() for pair in _zip_leaves(sub, obs[key])]
    if isinstance(space, spaces.Tuple):
        pairs = zip(space.spaces, obs, strict=True)
        return [pair for sub, o in pairs for pair in _zip_leaves(sub, o)]
    return [(space, obs)]


def _leaf_width(leaf: spaces.Space) -> int:
    if isinstance(leaf, spaces.Discrete):
        return int(leaf.n)
    if isinstance(leaf, spaces.MultiDiscrete):
        return int(np.sum(leaf.nvec))
    return int(np.prod(leaf.shape))


def _encode_leaf(leaf: spaces.Space, value: Any) -> np.ndarray:
    value = np.asarray(value)
    if isinstance(leaf, spaces.Discrete):
        codes = value.reshape(-1).astype(np.int64) - int(leaf.start)
        return np.eye(int(leaf.n), dtype=np.float32)[codes]
    if isinstance(leaf, spaces.MultiDiscrete):
        codes = value.reshape(value.shape[0], -1).astype(np.int64) - leaf.start.reshape(1, -1)
        nvec = leaf.nvec.reshape(-1)
        return np.concatenate(
            [np.eye(int(k), dtype=np.float32)[codes[:, i]] for i, k in enumerate(nvec)], axis=1
        )
    return value.reshape(value.shape[0], -1).astype(np.float32, copy=False)


def batch_one(obs: Any) -> Any:
    """Adds a leading batch axis of 1 to every leaf of a single (unbatched) observation."""
    if isinstance(obs, dict):
        return {k: batch_one(v) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(batch_one(v) for v in obs)
    return np.asarray(obs)[None]


class ActionKind(str, Enum):
    CONTINUOUS = "continuous"
    DISCRETE = "discrete"
    MULTI_DISCRETE = "multi_discrete"


@dataclass(frozen=True)
class ActionSpec:
    """How the actor's output maps to the env's action space."""

    kind: ActionKind
    shape: tuple[int, ...]
    nvec: tuple[int, ...] = ()
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    start: tuple[int, ...] = ()

    @classmethod
    def from_space(cls, space: spaces.Space) -> ActionSpec:
        if isinstance(space, spaces.Box):
            return cls(ActionKind.CONTINUOUS, tuple(space.shape),
                       low=tuple(space.low.reshape(-1).tolist()),
                       high=tuple(space.high.reshape(-1).tolist()))
        if isinstance(space, spaces.Discrete):
            return cls(ActionKind.DISCRETE, (), nvec=(int(space.n),), start=(int(space.start),))
        if isinstance(space, spaces.MultiDiscrete):
            return cls(ActionKind.MULTI_DISCRETE, tuple(space.shape),
                       nvec=tuple(int(k) for k in space.nvec.reshape(-1)),
                       start=tuple(int(s) for s in space.start.reshape(-1)))
        raise UnsupportedSpaceError(
            f"unsupported action space: {space} (Box, Discrete or MultiDiscrete)"
        )

    @property
    def action_dim(self) -> int:
        """Width of one stored action: floats for Box, one index per categorical otherwise."""
        return int(np.prod(self.shape)) if self.kind is ActionKind.CONTINUOUS else len(self.nvec)

    @property
    def logits_dim(self) -> int:
        """Width of the actor's output layer."""
        return self.action_dim if self.kind is ActionKind.CONTINUOUS else int(sum(self.nvec))

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Converts stored actions `[n, action_dim]` to what the vector env expects.

        Gaussian samples are stored unclipped (their log-prob must stay recomputable) and are
        clipped only here.
        """
        n = actions.shape[0]
        if self.kind is ActionKind.CONTINUOUS:
            clipped = np.clip(actions, np.asarray(self.low), np.asarray(self.high))
            return clipped.reshape((n, *self.shape)).astype(np.float32, copy=False)
        codes = actions.astype(np.int64) + np.asarray(self.start, dtype=np.int64)
        if self.kind is ActionKind.DISCRETE:
            return codes[:, 0]
        return codes.reshape((n, *self.shape))


class PolicyHead:
    """Sampling, log-probabilities and entropy for one `ActionSpec`, written out by hand.

    Gaussian policies have a state-independent log-std `[action_dim]`, or with gSDE
    (`sde_features > 0`, Raffin et al. 2022) a log-std matrix `[features, action_dim]`: the actor
    output then carries the (detached) latent features after the mean, the noise is
    `features @ eps` with `eps ~ N(0, std^2)` held for several steps, and the action variance is
    `features^2 @ std^2`. Held noise explores in smooth, consistent pushes, which is what
    momentum tasks such as Pendulum and MountainCar need.

    Noise is drawn on the CPU from the caller's CPU generator and then moved to the outputs'
    device: the random stream is the same on every device (and CPU results stay bit-identical).
    """

    def __init__(self, spec: ActionSpec, sde_features: int = 0) -> None:
        self.spec = spec
        self.sde_features = sde_features
        self._splits = list(spec.nvec)

    def gaussian(
        self, out: torch.Tensor, log_std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(mean, std, latent features or None) of the Gaussian policy."""
        if not self.sde_features:
            return out, log_std.exp().expand(out.shape), None
        mean, feat = out.split([self.spec.action_dim, self.sde_features], dim=-1)
        variance = feat.pow(2) @ torch.exp(2.0 * log_std)
        return mean, torch.sqrt(variance + _SDE_EPS), feat

    def sde_noise(self, n: int, log_std: torch.Tensor, generator: torch.Generator | None
                  ) -> torch.Tensor:
        """Fresh gSDE exploration matrices `[n, features, action_dim]`, one per env."""
        eps = torch.randn((n, *log_std.shape), generator=generator, dtype=log_std.dtype)
        return eps.to(log_std.device) * log_std.exp()

    def sample(
        self, out: torch.Tensor, log_std: torch.Tensor | None, deterministic: bool,
        generator: torch.Generator | None, noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draws actions `[n, action_dim]` from actor outputs `[n, out_dim]`.

        `noise` holds gSDE exploration matrices across steps; without it fresh ones are drawn.
        """
        if self.spec.kind is ActionKind.CONTINUOUS:
            mean, std, feat = self.gaussian(out, log_std)
            if deterministic:
                return mean
            if feat is None:
                eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
                return mean + eps.to(mean.device) * std
            if noise is None:
                noise = self.sde_noise(out.shape[0], log_std, generator)
            return mean + (feat.unsqueeze(-2) @ noise).squeeze(-2)
        picks = []
        for logits in torch.split(out, self._splits, dim=-1):
            if deterministic:
                picks.append(logits.argmax(-1))
            else:
                # Gumbel-max: argmax(logits + Gumbel noise) is an exact categorical sample.
                u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype)
                u = u.to(logits.device)
                picks.append((logits - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1))
        return torch.stack(picks, dim=-1).to(out.dtype)

    def log_prob(
        self, out: torch.Tensor, log_std: torch.Tensor | None, actions: torch.Tensor
    ) -> torch.Tensor:
        """Log-probability of `actions` under the outputs, summed over action components."""
        if self.spec.kind is ActionKind.CONTINUOUS:
            mean, std, _ = self.gaussian(out, log_std)
            z = (actions - mean) / std
            return (-0.5 * z.pow(2) - std.log() - _LOG_SQRT_2PI).sum(-1)
        total = torch.zeros(out.shape[:-1], dtype=out.dtype, device=out.device)
        for i, logits in enumerate(torch.split(out, self._splits, dim=-1)):
            logp = torch.log_softmax(logits, dim=-1)
            total = total + logp.gather(-1, actions[..., i : i + 1].long()).squeeze(-1)
        return total

    def entropy(self, out: torch.Tensor, log_std: torch.Tensor | None) -> torch.Tensor:
        if self.spec.kind is ActionKind.CONTINUOUS:
            _, std, _ = self.gaussian(out, log_std)
            return (0.5 + _LOG_SQRT_2PI + std.log()).sum(-1)
        total = torch.zeros(out.shape[:-1], dtype=out.dtype, device=out.device)
        for logits in torch.split(out, self._splits, dim=-1):
            logp = torch.log_softmax(logits, dim=-1)
            total = total - (logp.exp() * logp).sum(-1)
        return total


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """JSON-ready description of a space (agent files never pickle spaces)."""
    if isinstance(space, spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(),
                "shape": list(space.shape), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_dict(v) for k, v in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_dict(v) for v in space.spaces]}
    raise UnsupportedSpaceError(f"unsupported space: {space}")


def space_from_dict(data: dict[str, Any]) -> spaces.Space:
    kind = data["type"]
    if kind == "Box":
        return spaces.Box(np.asarray(data["low"], dtype=data["dtype"]),
                          np.asarray(data["high"], dtype=data["dtype"]),
                          shape=tuple(data["shape"]), dtype=data["dtype"])
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(data["nvec"]), start=np.asarray(data["start"]))
    if kind == "MultiBinary":
        return spaces.MultiBinary(data["n"])
    if kind == "Dict":
        return spaces.Dict({k: space_from_dict(v) for k, v in data["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([space_from_dict(v) for v in data["spaces"]])
    raise ValueError(f"unknown space type in agent file: {kind!r}")
