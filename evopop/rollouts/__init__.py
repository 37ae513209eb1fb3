"""Where training rollouts come from, behind one protocol (`RolloutSource`): in-process vector
envs (`VectorRollouts`) or independent env workers on an `evopop.execution` pool
(`WorkerRollouts`). `make_rollout_envs` picks one from an `EnvSpec`."""

from evopop.agents.train import RolloutSource
from evopop.rollouts.make import make_rollout_envs
from evopop.rollouts.source import Rollouts
from evopop.rollouts.vector import VectorRollouts
from evopop.rollouts.workers import WorkerRollouts, split_envs

__all__ = ["RolloutSource", "Rollouts", "VectorRollouts", "WorkerRollouts", "make_rollout_envs",
           "split_envs"]
