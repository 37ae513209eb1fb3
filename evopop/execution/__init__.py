"""Where work runs: one placement enum and one worker-pool protocol (in this process, local
processes, Ray) for members, env workers and sweep runs alike."""

from evopop.execution.placement import Placement

__all__ = ["Placement"]
