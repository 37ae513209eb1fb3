"""The one answer to "where does it run": for members, env workers and sweep runs alike."""

from __future__ import annotations

from enum import Enum


class Placement(str, Enum):
    """This process, spawned local worker processes, or Ray actors/tasks on a cluster."""

    LOCAL = "local"
    PROCESSES = "processes"
    RAY = "ray"
