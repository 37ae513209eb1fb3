"""Running observation and reward normalisation; their statistics are part of the agent."""

from __future__ import annotations

import numpy as np


class RunningMeanStd:
    """Mean and variance over every sample seen (Chan et al.'s parallel update), in float64."""

    def __init__(self, dim: int | tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(dim, np.float64)
        self.var = np.ones(dim, np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        n = batch.shape[0]
        delta = batch.mean(axis=0) - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch.var(axis=0) * n + delta**2 * self.count * n / total
        self.var = m2 / total
        self.count = total

    def combine(self, other: RunningMeanStd) -> None:
        """Adds the samples summarised by `other` (Chan's pairwise merge)."""
        total = self.count + other.count
        delta = other.mean - self.mean
        m2 = (self.var * self.count + other.var * other.count
              + delta**2 * self.count * other.count / total)
        self.mean = self.mean + delta * other.count / total
        self.var = m2 / total
        self.count = total

    def since(self, base: RunningMeanStd) -> RunningMeanStd:
        """Statistics of the samples added after `base` (this = base + those samples).

        Env workers start from the learner's statistics; what they send back is only what they
        saw, so the learner can merge every worker's share exactly once.
        """
        added = RunningMeanStd(self.mean.shape)
        added.count = self.count - base.count
        if added.count <= 0:
            added.count = 0.0
            return added
        added.mean = (self.mean * self.count - base.mean * base.count) / added.count
        delta = added.mean - base.mean
        m2 = (self.var * self.count - base.var * base.count
              - delta**2 * base.count * added.count / self.count)
        added.var = np.maximum(m2, 0.0) / added.count
        return added

    def copy(self) -> RunningMeanStd:
        clone = RunningMeanStd(self.mean.shape)
        clone.load(self.state())
        return clone

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": np.array(self.count)}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.mean = np.array(state["mean"], np.float64)
        self.var = np.array(state["var"], np.float64)
        self.count = float(state["count"])


class ObsNormalizer:
    """Standardises the continuous columns of encoded observations and clips them to ±clip."""

    def __init__(self, continuous: np.ndarray, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.columns = np.flatnonzero(continuous)
        self.rms = RunningMeanStd(len(self.columns))
        self.clip = clip
        self.eps = eps

    def __call__(self, obs: np.ndarray, update: bool) -> np.ndarray:
        """Normalises `obs` `[n, dim]` in place-safe fashion; `update=False` freezes the stats."""
        if not len(self.columns):
            return obs
        cols = obs[:, self.columns]
        if update:
            self.rms.update(cols)
        out = obs.copy()
        scaled = (cols - self.rms.mean) / np.sqrt(self.rms.var + self.eps)
        out[:, self.columns] = np.clip(scaled, -self.clip, self.clip)
        return out


class RewardScaler:
    """Divides rewards by the running std of the discounted return (as sb3's VecNormalize).

    Only the statistics belong to the agent; the per-env return accumulator belongs to the
    collector, so it is passed in.
    """

    def __init__(self, gamma: float, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.gamma = gamma
        self.rms = RunningMeanStd()
        self.clip = clip
        self.eps = eps

    def __call__(
        self, rewards: np.ndarray, returns: np.ndarray, dones: np.ndarray, update: bool
    ) -> np.ndarray:
        """Scales one step of rewards `[n]`; updates `returns` `[n]` in place."""
        returns *= self.gamma
        returns += rewards
        if update:
            self.rms.update(returns)
        returns[dones] = 0.0
        scaled = rewards / np.sqrt(self.rms.var + self.eps)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)
