"""Diagnostic memory tasks: small POMDPs that only an agent with memory can solve.

Each shows the information it later asks about only once (or only through noise), then asks after
a delay. Between them they cover Box, Discrete and MultiDiscrete observation and action spaces, and
each comes in a few difficulty levels (registered ids below; every parameter is also a
`gym.make` keyword). No dependencies beyond Gymnasium; every random draw comes from the env's own
`np_random`, seeded by `reset(seed=...)`.

| id | memory | observation | action | random ≈ | solved |
|---|---|---|---|---|---|
| `evopop/TMaze*-v0` | a cue seen at the first step | Box(3) | Discrete(3) | < 0 | 1 |
| `evopop/DelayedRecall*-v0` | bits seen at the first step | MultiDiscrete | MultiDiscrete | 0 | 1 |
| `evopop/CountEvents*-v0` | how many events | MultiDiscrete([2, 2]) | Discrete | 0.45 | 1 |
| `evopop/NoisyCue*-v0` | the mean of noisy readings | Box(2) | Box(1) | ≈ 0.5 | ≈ 1 |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class TMaze(gym.Env):
    """Bakker's T-maze: a cue (up or down) is shown only at the start of a corridor of `length`
    cells; at the junction at its end the agent must turn the way the cue said.

    Observation `[cue_up, cue_down, at_junction]`. Actions: 0 forward, 1 turn up, 2 turn down.
    Forward moves one cell (at the junction it does nothing); a turn ends the episode: +1 at the
    junction the cued way, −1 otherwise (the wrong way, or turning in the corridor).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
    FORWARD, UP, DOWN = 0, 1, 2

    def __init__(self, length: int = 10) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length = length
        self.observation_space = spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(3)
        self.cue = self.UP
        self.position = 0

    def _obs(self) -> np.ndarray:
        shown = self.position == 0
        return np.array([shown and self.cue == self.UP, shown and self.cue == self.DOWN,
                         self.position == self.length], np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.cue = self.UP if self.np_random.random() < 0.5 else self.DOWN
        self.position = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = int(action)
        if action == self.FORWARD:
            self.position = min(self.position + 1, self.length)
            return self._obs(), 0.0, False, False, {}
        right = self.position == self.length and action == self.cue
        return self._obs(), 1.0 if right else -1.0, True, False, {}


class DelayedRecall(gym.Env):
    """Remember `bits` random bits shown at the first step; `delay` blank steps later a query
    flag asks for them, and the next action is scored: 2 x (fraction of bits right) − 1.

    Observation `[bit_1 .. bit_bits, query]` (bits are 0 after the first step); action one
    value per bit. An episode is `delay + 2` steps.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, bits: int = 2, delay: int = 8) -> None:
        if bits < 1 or delay < 0:
            raise ValueError(f"need bits >= 1 and delay >= 0, got {bits}, {delay}")
        self.bits, self.delay = bits, delay
        self.observation_space = spaces.MultiDiscrete([2] * (bits + 1))
        self.action_space = spaces.MultiDiscrete([2] * bits)
        self.target = np.zeros(bits, np.int64)
        self.t = 0

    def _obs(self) -> np.ndarray:
        shown = self.target if self.t == 0 else np.zeros(self.bits, np.int64)
        return np.append(shown, int(self.t == self.delay + 1))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.target = self.np_random.integers(0, 2, self.bits)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        scored = self.t == self.delay + 1
        reward = 2.0 * float(np.mean(np.asarray(action) == self.target)) - 1.0 if scored else 0.0
        self.t += 1
        return self._obs(), reward, scored, False, {}


class CountEvents(gym.Env):
    """Count the events among `length` steps (each step has one with probability `p`), then
    report the count at the query: reward 1 − 2 |answer − count| / length, at least −1.

    Observation `[event, query]`; action the count, 0 .. `length`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, length: int = 8, p: float = 0.5) -> None:
        if length < 1 or not 0.0 <= p <= 1.0:
            raise ValueError(f"need length >= 1 and 0 <= p <= 1, got {length}, {p}")
        self.length, self.p = length, p
        self.observation_space = spaces.MultiDiscrete([2, 2])
        self.action_space = spaces.Discrete(length + 1)
        self.events = np.zeros(length, np.int64)
        self.t = 0

    def _obs(self) -> np.ndarray:
        if self.t == self.length:
            return np.array([0, 1])
        return np.array([self.events[self.t], 0])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.events = (self.np_random.random(self.length) < self.p).astype(np.int64)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.t < self.length:
            self.t += 1
            return self._obs(), 0.0, False, False, {}
        error = abs(int(action) - int(self.events.sum()))
        return self._obs(), max(-1.0, 1.0 - 2.0 * error / self.length), True, False, {}


READING_BOUND = 10.0  # a reading is clipped here, far outside c ± 6 sigma for sigma <= 1


class NoisyCue(gym.Env):
    """A hidden value c ~ U(−1, 1) is read through Gaussian noise (std `sigma`) for `reads`
    steps; after `delay` blank steps the query asks for it: reward 1 − (action − c)², scored on
    the action after the query. Averaging the readings beats trusting any one of them.

    Observation `[reading (0 when not reading), query]`; action a value in [−1, 1].
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, sigma: float = 0.5, reads: int = 4, delay: int = 4) -> None:
        if sigma < 0 or reads < 1 or delay < 0:
            raise ValueError(f"need sigma >= 0, reads >= 1, delay >= 0, got {sigma}, {reads}, "
                             f"{delay}")
        self.sigma, self.reads, self.delay = sigma, reads, delay
        self.observation_space = spaces.Box(-READING_BOUND, READING_BOUND, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.value = 0.0
        self.t = 0

    @property
    def query_step(self) -> int:
        return self.reads + self.delay

    def _obs(self) -> np.ndarray:
        reading = 0.0
        if self.t < self.reads:
            noise = self.sigma * float(self.np_random.standard_normal())
            reading = float(np.clip(self.value + noise, -READING_BOUND, READING_BOUND))
        return np.array([reading, float(self.t == self.query_step)], np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.value = float(self.np_random.uniform(-1.0, 1.0))
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        scored = self.t == self.query_step
        answer = float(np.clip(np.asarray(action, np.float64).reshape(-1)[0], -1.0, 1.0))
        reward = 1.0 - (answer - self.value) ** 2 if scored else 0.0
        self.t += 1
        return self._obs(), reward, scored, False, {}


@dataclass(frozen=True)
class MemoryTask:
    """One registered difficulty level."""

    id: str
    entry_point: type[gym.Env]
    kwargs: dict[str, Any]
    max_episode_steps: int


MEMORY_TASKS: tuple[MemoryTask, ...] = (
    MemoryTask("evopop/TMazeShort-v0", TMaze, {"length": 4}, 10),
    MemoryTask("evopop/TMaze-v0", TMaze, {"length": 10}, 22),
    MemoryTask("evopop/TMazeLong-v0", TMaze, {"length": 20}, 42),
    MemoryTask("evopop/DelayedRecallEasy-v0", DelayedRecall, {"bits": 1, "delay": 2}, 4),
    MemoryTask("evopop/DelayedRecall-v0", DelayedRecall, {"bits": 2, "delay": 8}, 10),
    MemoryTask("evopop/DelayedRecallHard-v0", DelayedRecall, {"bits": 4, "delay": 16}, 18),
    MemoryTask("evopop/CountEvents-v0", CountEvents, {"length": 8}, 9),
    MemoryTask("evopop/CountEventsHard-v0", CountEvents, {"length": 16}, 17),
    MemoryTask("evopop/NoisyCue-v0", NoisyCue, {"sigma": 0.5, "reads": 4, "delay": 4}, 9),
    MemoryTask("evopop/NoisyCueHard-v0", NoisyCue, {"sigma": 1.0, "reads": 8, "delay": 8}, 17),
)
"""Every episode ends by itself (at its query or a turn) within `max_episode_steps`, except a
T-maze agent that never turns, which the limit truncates."""


def register_memory_envs() -> None:
    """Registers every difficulty level once (idempotent)."""
    for task in MEMORY_TASKS:
        if task.id not in gym.registry:
            gym.register(task.id, entry_point=task.entry_point, kwargs=task.kwargs,
                         max_episode_steps=task.max_episode_steps)
