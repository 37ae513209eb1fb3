"""What the callers of `train_agent` hold: a `RolloutSource` they can also build an agent
for (its spaces) and close."""

from __future__ import annotations

from typing import Any, Protocol

from evopop.agents.train import RolloutSource


class Rollouts(RolloutSource, Protocol):
    num_envs: int
    single_observation_space: Any
    single_action_space: Any
    timed_out: int  # env workers replaced for exceeding env.step_timeout_s, over its life

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...
