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


class StackedRMS:
    """The statistics of several members' `RunningMeanStd`s as one array each, updated with a
    batch per member at once: `update(batch [P, n, *dim])` is `rms[p].update(batch[p])` for
    every p, in the same arithmetic, for the members of a group stepped together."""

    def __init__(self, members: list[RunningMeanStd]) -> None:
        self.members = members
        self.mean = np.stack([m.mean for m in members])
        self.var = np.stack([m.var for m in members])
        self.count = np.array([m.count for m in members], np.float64)

    def _per_member(self, x: np.ndarray) -> np.ndarray:
        """A `[P]` array shaped to broadcast against the statistics `[P, *dim]`."""
        return x.reshape(-1, *([1] * (self.mean.ndim - 1)))

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        n = batch.shape[1]
        delta = batch.mean(axis=1) - self.mean
        count, total = self._per_member(self.count), self._per_member(self.count + n)
        self.mean = self.mean + delta * n / total
        m2 = self.var * count + batch.var(axis=1) * n + delta**2 * count * n / total
        self.var = m2 / total
        self.count = self.count + n

    def write_back(self, rows: list[int]) -> None:
        """The members `rows` take their row of the statistics (the others keep theirs)."""
        for p in rows:
            member = self.members[p]
            member.mean, member.var = self.mean[p].copy(), self.var[p].copy()
            member.count = float(self.count[p])


class _StackedMembers:
    """Some members' normalisers (an `ObsNormalizer` or `RewardScaler` each, or None): the
    present ones' statistics stacked, their rows among the members, their shared constants."""

    def __init__(self, members: list[ObsNormalizer | None] | list[RewardScaler | None]) -> None:
        self.rows = [p for p, member in enumerate(members) if member is not None]
        self.present = [member for member in members if member is not None]
        self.stats = StackedRMS([m.rms for m in self.present]) if self.present else None
        self.clip = self.present[0].clip if self.present else 0.0
        self.eps = self.present[0].eps if self.present else 0.0

    def write_back(self, live: list[bool]) -> None:
        """The statistics of the live members go back into their own normalisers."""
        if self.stats is not None:
            self.stats.write_back([i for i, p in enumerate(self.rows) if live[p]])


class StackedObsNorm(_StackedMembers):
    """The members' `ObsNormalizer`s on one batch per member `[P, n, dim]` at once; members
    without one pass their observations through unchanged."""

    def __init__(self, norms: list[ObsNormalizer | None]) -> None:
        super().__init__(norms)
        self.columns = self.present[0].columns if self.present else np.zeros(0, np.intp)

    def __call__(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if self.stats is None or not len(self.columns):
            return obs
        block = obs[self.rows]
        cols = block[:, :, self.columns]
        if update:
            self.stats.update(cols)
        scale = np.sqrt(self.stats.var + self.eps)[:, None]
        block[:, :, self.columns] = np.clip((cols - self.stats.mean[:, None]) / scale,
                                            -self.clip, self.clip)
        if len(self.rows) == len(obs):
            return block  # a copy already (fancy indexing)
        out = obs.copy()
        out[self.rows] = block
        return out


class StackedRewardScaler(_StackedMembers):
    """The members' `RewardScaler`s on one step of rewards per member `[P, n]` at once;
    members without one keep their raw rewards."""

    def __init__(self, scalers: list[RewardScaler | None]) -> None:
        super().__init__(scalers)
        self.gamma = np.array([s.gamma for s in self.present])[:, None]

    def __call__(self, rewards: np.ndarray, returns: np.ndarray, dones: np.ndarray,
                 update: bool) -> np.ndarray:
        """Scaled rewards `[P, n]` float32; updates `returns` `[P, n]` in place."""
        out = rewards.astype(np.float32)
        if self.stats is None:
            return out
        mine = returns[self.rows]
        mine *= self.gamma
        mine += rewards[self.rows]
        if update:
            self.stats.update(mine)
        mine[dones[self.rows]] = 0.0
        returns[self.rows] = mine
        scaled = rewards[self.rows] / np.sqrt(self.stats.var + self.eps)[:, None]
        out[self.rows] = np.clip(scaled, -self.clip, self.clip)
        return out
