"""Run directories: the files a run writes; a new run never mixes with an old one."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evopop.atomic import atomic_write_bytes
from evopop.errors import UserError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
LINEAGE_FILE = "lineage.jsonl"
CHECKPOINT_FILE = "checkpoint.safetensors"
ELITE_FILE = "elite.safetensors"
AGENT_FILE = "agent.safetensors"
SUMMARY_FILE = "summary.json"
PLOTS_DIR = "plots"
RUN_FILES = (CHECKPOINT_FILE, SUMMARY_FILE, ELITE_FILE, AGENT_FILE, METRICS_FILE, LINEAGE_FILE,
             CONFIG_FILE)


def default_run_dir(config_path: str | Path) -> Path:
    """runs/<config name>-<UTC timestamp>: a fresh directory per run unless one is named."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(config_path).stem}-{stamp}"


def prepare_fresh(run_dir: Path, config_yaml: str, overwrite: bool) -> None:
    """Creates the run dir with its resolved config; refuses a used one unless `overwrite`."""
    used = [name for name in RUN_FILES if (run_dir / name).exists()]
    if used and not overwrite:
        raise UserError(f"{run_dir} already holds a run ({used[0]}); continue it with "
                        f"--resume {run_dir}, or pass --overwrite, or pick another --run-dir")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"--run-dir {run_dir} is a file, not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in used:
        (run_dir / name).unlink()
    for old_plot in (run_dir / PLOTS_DIR).glob("*.png"):  # the old run's pictures go too
        old_plot.unlink()
    atomic_write_bytes(run_dir / CONFIG_FILE, config_yaml.encode())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a run log; a torn line (a killed run) or a foreign one is skipped,
    and a log not written yet reads as empty."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
