"""Run directories: `RunDir` owns every file a run writes, and a new run never mixes with an old
one.

A run directory holds `config.yaml` (resolved), `metrics.jsonl` (one `GenerationRecord` per
line), `lineage.jsonl` (one `LineageRecord` per new member), `checkpoint.safetensors` (the whole
run, rewritten atomically each generation), `elite.safetensors` (an agent file), `summary.json`
(the `RunSummary`), `plots/` and, with TensorBoard on, `tensorboard/` (its event files).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from evopop.atomic import atomic_write_bytes
from evopop.errors import UserError
from evopop.records import GenerationRecord, LineageRecord, RecordError, RunSummary

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LINEAGE_FILE = "lineage.jsonl"
CHECKPOINT_FILE = "checkpoint.safetensors"
ELITE_FILE = "elite.safetensors"
SUMMARY_FILE = "summary.json"
PLOTS_DIR = "plots"
TENSORBOARD_DIR = "tensorboard"
EVENT_FILES = "events.out.tfevents.*"
"""TensorBoard's event file names (its writers add time, host and process)."""
RUN_FILES = (CHECKPOINT_FILE, SUMMARY_FILE, ELITE_FILE, METRICS_FILE, LINEAGE_FILE, CONFIG_FILE)
R = TypeVar("R", GenerationRecord, LineageRecord)


def default_run_dir(config_path: str | Path) -> Path:
    """runs/<config name>-<UTC timestamp>: a fresh directory per run unless one is named."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(config_path).stem}-{stamp}"


def _objects(path: Path) -> Iterator[tuple[int, str, Any]]:
    """(line number, line, JSON object) of a log; a torn line (a killed run mid-write) is
    skipped, and a log not written yet reads as empty."""
    if not path.is_file():
        return
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            yield number, line, data


def _parse(path: Path, number: int, data: Any, parse: Callable[[Any], R]) -> R:
    try:
        return parse(data)
    except RecordError as err:
        raise type(err)(f"{path} line {number}: {err}") from None


def _read_log(path: Path, parse: Callable[[Any], R]) -> list[R]:
    return [_parse(path, n, data, parse) for n, _, data in _objects(path)]


def _append(path: Path, records: Iterable[GenerationRecord | LineageRecord]) -> None:
    """Whole lines, flushed: a kill can tear at most the last one, which readers skip."""
    text = "".join(json.dumps(r.to_json()) + "\n" for r in records)
    with path.open("a") as log:
        log.write(text)


@dataclass(frozen=True)
class RunDir:
    """The files of one run, and the only code that writes or reads them."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def lineage(self) -> Path:
        return self.path / LINEAGE_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def elite(self) -> Path:
        return self.path / ELITE_FILE

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def plots(self) -> Path:
        return self.path / PLOTS_DIR

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_DIR

    def prepare_fresh(self, config_yaml: str, overwrite: bool) -> None:
        """Creates the run dir with its resolved config and empty logs; refuses a used one
        unless `overwrite`."""
        used = [name for name in RUN_FILES if (self.path / name).exists()]
        if used and not overwrite:
            raise UserError(f"{self.path} already holds a run ({used[0]}); continue it with "
                            f"--resume {self.path}, or pass --overwrite, or pick another --run-dir")
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--run-dir {self.path} is a file, not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        for name in used:
            (self.path / name).unlink()
        for old in (*self.plots.glob("*.png"), *self.tensorboard.glob(EVENT_FILES)):
            old.unlink()  # the old run's pictures and charts go too
        atomic_write_bytes(self.config, config_yaml.encode())

    def append_generation(self, record: GenerationRecord) -> None:
        _append(self.metrics, [record])

    def append_lineage(self, records: Iterable[LineageRecord]) -> None:
        _append(self.lineage, records)

    def generations(self) -> list[GenerationRecord]:
        """metrics.jsonl in file order; a foreign line or another schema version is a
        `RecordError`."""
        return _read_log(self.metrics, GenerationRecord.from_json)

    def lineage_records(self) -> list[LineageRecord]:
        return _read_log(self.lineage, LineageRecord.from_json)

    def truncate_logs(self, metrics_before: int, lineage_before: int) -> None:
        """Keeps the metrics lines of generations < `metrics_before` and the lineage lines of
        generations < `lineage_before` (a resumed run drops what its checkpoint does not account
        for); torn lines go too."""
        for path, parse, limit in ((self.metrics, GenerationRecord.from_json, metrics_before),
                                   (self.lineage, LineageRecord.from_json, lineage_before)):
            if path.exists():
                keep = [line for n, line, data in _objects(path)
                        if _parse(path, n, data, parse).generation < limit]
                atomic_write_bytes(path, "".join(f"{line}\n" for line in keep).encode())

    def write_summary(self, summary: RunSummary) -> None:
        atomic_write_bytes(self.summary, json.dumps(summary.to_json(), indent=2).encode())

    def read_summary(self) -> RunSummary:
        try:
            data = json.loads(self.summary.read_text())
        except FileNotFoundError:
            raise UserError(f"{self.summary} does not exist: the run has not finished") from None
        except ValueError:
            raise RecordError(f"{self.summary} is not valid JSON") from None
        try:
            return RunSummary.from_json(data)
        except RecordError as err:
            raise type(err)(f"{self.summary}: {err}") from None
