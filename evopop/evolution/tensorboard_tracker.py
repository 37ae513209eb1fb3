"""TensorBoard as a tracker (`--tensorboard [DIR]`, config key `tensorboard`).

Points go through torch's `SummaryWriter` (the `tensorboard` package, imported only when asked
for) as TensorBoard's classic float32 scalars: the kind both its readers, the Python one and the
Rust data server, chart (the latter shows no float64 scalars). Every training session writes a
new event file into the same directory, opened with a session start at a "purge step": readers
drop the events of earlier files at or after it. A resumed run starts one step after its last
finished generation, so what a killed session logged for a generation it did not finish goes
and the stream goes on exactly where the checkpoint does; a fresh run starts at 0.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evopop.errors import UserError
from evopop.evolution.tracking import Point
from evopop.rundir import EVENT_FILES, RunDir


def log_dir(setting: bool | str, run_dir: RunDir) -> Path | None:
    """Where a run's events go: `true` is the run dir's tensorboard/, a relative directory is
    relative to the run dir (so a config serves every run, a sweep's too); None when off."""
    if setting is False:
        return None
    return run_dir.tensorboard if setting is True else run_dir.path / setting


def _writer_class() -> Any:
    try:
        return importlib.import_module("torch.utils.tensorboard").SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard "
                        "(or pip install -e '.[tensorboard]')") from None


def event_files(path: Path) -> list[Path]:
    return sorted(path.glob(EVENT_FILES)) if path.is_dir() else []


def check_log_dir(path: Path, resume: bool, overwrite: bool) -> None:
    """Before the run dir is touched: the package is there, and a fresh run's events will not
    mix with another run's."""
    _writer_class()
    if not resume and not overwrite and event_files(path):
        raise UserError(f"{path} already holds TensorBoard events of another run; continue "
                        "that run with --resume, pass --overwrite, or log elsewhere with "
                        "--tensorboard DIR")


class TensorBoardTracker:
    """One event file per training session; each point is flushed as it is written, so
    TensorBoard shows a generation as soon as it ends."""

    def __init__(self, path: Path, purge_step: int, history: Sequence[Point] = ()) -> None:
        writer = _writer_class()
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._writer = writer(str(path), purge_step=purge_step)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot write TensorBoard events to {path}: {err}") from None
        for point in history:
            self.write(point)

    def write(self, point: Point) -> None:
        for tag, value in point.scalars.items():
            self._writer.add_scalar(tag, value, point.step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def open_tensorboard(path: Path, resume: bool, resume_step: int,
                     history: Callable[[], Sequence[Point]]) -> TensorBoardTracker:
    """A fresh run replaces old events (`--overwrite`) and starts at 0. A resumed run starts
    after `resume_step` (its last finished generation's total env steps); a directory that has
    no events yet (TensorBoard turned on at the resume) first gets the run's earlier
    generations, so its charts start at the run's start."""
    if not resume:
        for old in event_files(path):
            old.unlink()
        return TensorBoardTracker(path, purge_step=0)
    backlog = () if event_files(path) else history()
    return TensorBoardTracker(path, purge_step=resume_step + 1, history=backlog)
