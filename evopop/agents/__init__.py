"""Recurrent PPO: actor-critic from a spec, rollout buffer, BPTT update, evaluation, agent files.

Names are loaded on first use, so importing a light module of this package (e.g. the specs a
config validates against) does not import torch.
"""

from __future__ import annotations

from evopop.lazy import lazy_getattr

_EXPORTS = {
    "Activation": "evopop.agents.spec",
    "CellType": "evopop.agents.spec",
    "NetSpec": "evopop.agents.spec",
    "PPOParams": "evopop.agents.spec",
    "Agent": "evopop.agents.agent",
    "EvalResult": "evopop.agents.evaluation",
    "evaluate": "evopop.agents.evaluation",
    "TrainResult": "evopop.agents.train",
    "train_agent": "evopop.agents.train",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
