"""Optional Weights & Biases logging of generation records.

Offline unless the user is logged in (an API key in the environment or in ~/.netrc), so a run
never needs the network; `WANDB_MODE` set by the user wins. wandb is imported only when asked for.
"""

from __future__ import annotations

import importlib
import netrc
import os
from pathlib import Path
from typing import Any

import numpy as np

from evopop.errors import UserError
from evopop.records import GenerationRecord, json_number

_WANDB_HOST = "api.wandb.ai"


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(_WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    return os.environ.get("WANDB_MODE") or ("online" if _logged_in() else "offline")


class WandbLogger:
    """Logs one point per generation: elite/best/mean fitness, throughput, per-member fitness."""

    def __init__(self, run_dir: Path, config: dict[str, Any], name: str) -> None:
        try:
            self._wandb = importlib.import_module("wandb")
        except ImportError:
            raise UserError("--wandb needs the wandb package: pip install wandb") from None
        self._run = self._wandb.init(project="evopop", name=name, config=config,
                                     dir=str(run_dir), mode=wandb_mode())

    def log(self, record: GenerationRecord) -> None:
        fitness = np.array([m.fitness for m in record.members], np.float64)
        finite = fitness[np.isfinite(fitness)]
        charted = np.where(np.isfinite(fitness), fitness, np.nan)  # a gap, not a -inf spike
        point = {
            "elite_fitness": json_number(record.elite_fitness),
            "best_fitness": json_number(record.best_fitness),
            "mean_fitness": float(finite.mean()) if finite.size else None,
            "steps_per_s": record.steps_per_s,
            "diverged_members": int((~np.isfinite(fitness)).sum()),
            **{f"member_{i}/fitness": float(f) for i, f in enumerate(charted)},
            **{f"member_{i}/lr": m.hparams["lr"] for i, m in enumerate(record.members)},
            **{f"elite/{name}": value for name, value in (record.elite_metrics or {}).items()
               if value is not None},
        }
        self._run.log(point, step=record.total_env_steps)

    def close(self) -> None:
        self._run.finish()
