"""How long env stepping may take before a copy (or an env worker) is taken for hung."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_RESET_S = 60.0
"""Start-up and reset allowance when only `env.step_timeout_s` is set."""


@dataclass(frozen=True)
class StepTimeouts:
    """`env.step_timeout_s` and `env.reset_timeout_s`. `step_s`: per step (an env worker: per
    step of its rollout, in total); `reset_s`: when a copy or worker (re)starts and resets (a
    fresh process imports its modules and builds its envs inside that allowance). `step_s`
    None: no limit (a hung env then hangs its member)."""

    step_s: float | None = None
    reset_s: float | None = None

    def reset_budget(self) -> float:
        return DEFAULT_RESET_S if self.reset_s is None else self.reset_s

    def budget(self, steps: int, resets: bool) -> float | None:
        """An env worker's allowance for a rollout of `steps` steps."""
        if self.step_s is None:
            return None
        return steps * self.step_s + (self.reset_budget() if resets else 0.0)
