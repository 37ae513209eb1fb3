"""Weights & Biases as a tracker (`--wandb`).

Offline unless the user is logged in (an API key in the environment or in ~/.netrc), so a run
never needs the network; `WANDB_MODE` set by the user wins. wandb is imported only when asked for.
"""

from __future__ import annotations

import importlib
import netrc
import os
from pathlib import Path
from typing import Any

from evopop.errors import UserError
from evopop.evolution.tracking import Point

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


class WandbTracker:
    """One wandb run per training session; a point is one `log` call at its step."""

    def __init__(self, run_dir: Path, config: dict[str, Any], name: str) -> None:
        try:
            self._wandb = importlib.import_module("wandb")
        except ImportError:
            raise UserError("--wandb needs the wandb package: pip install wandb") from None
        self._run = self._wandb.init(project="evopop", name=name, config=config,
                                     dir=str(run_dir), mode=wandb_mode())

    def write(self, point: Point) -> None:
        self._run.log(dict(point.scalars), step=point.step)

    def close(self) -> None:
        self._run.finish()
