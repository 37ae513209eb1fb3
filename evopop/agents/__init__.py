"""Recurrent PPO: actor-critic from a spec, rollout buffer, BPTT update, evaluation, agent files."""

from evopop.agents.agent import Agent
from evopop.agents.evaluate import EvalResult, evaluate
from evopop.agents.spec import Activation, CellType, NetSpec, PPOParams
from evopop.agents.train import TrainResult, train_agent

__all__ = [
    "Activation",
    "Agent",
    "CellType",
    "EvalResult",
    "NetSpec",
    "PPOParams",
    "TrainResult",
    "evaluate",
    "train_agent",
]
