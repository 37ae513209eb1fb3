"""One env copy as a worker's handler: what each process of timed lockstep stepping
(`evopop.rollouts.lockstep`) runs. It lives in the env layer, which never imports torch, so a
copy's process starts with gymnasium and the env alone."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

import gymnasium as gym


class Command(str, Enum):
    RESET = "reset"  # data: reset's keyword arguments (seed, options)
    STEP = "step"  # data: the action


StepReply = tuple[Any, float, bool, bool, dict[str, Any]]
ResetReply = tuple[Any, dict[str, Any]]


class EnvCopy:
    """Resets and steps one env, with SAME_STEP autoreset exactly as Gymnasium's vector-env
    workers do it: a step that ends an episode returns the next episode's first observation
    and puts the final one (and the final info) in the info."""

    def __init__(self, factory: Callable[[], gym.Env]) -> None:
        self.env = factory()

    def __call__(self, command: Command, data: Any) -> StepReply | ResetReply:
        if command is Command.RESET:
            return self.env.reset(**data)
        obs, reward, terminated, truncated, info = self.env.step(data)
        if terminated or truncated:
            final_obs, final_info = obs, info
            obs, reset_info = self.env.reset()
            info = {"final_info": final_info, "final_obs": final_obs, **reset_info}
        return obs, float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.env.close()
