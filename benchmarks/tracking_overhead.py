"""What logging costs a generation: making its point and writing it to TensorBoard.

Usage: python benchmarks/tracking_overhead.py [--generations 200] [--members 4 16 64]

For each population size, synthetic generation records (the hp space's seven hyperparameters
per member, two episode metrics) are turned into points (`generation_point`) and written by a
`TensorBoardTracker` (each point flushed to disk, as in a run) into a temporary directory. Also
times importing torch's SummaryWriter in a fresh interpreter (paid once per run, only with
TensorBoard on). Last line: JSON (milliseconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evopop.evolution.space import DEFAULT_HP_SPACE
from evopop.evolution.tensorboard_tracker import TensorBoardTracker
from evopop.evolution.tracking import generation_point
from evopop.records import GenerationRecord, MemberRecord

HP_NAMES = tuple(DEFAULT_HP_SPACE)
PROBE = "import time; t = time.perf_counter(); import torch.utils.tensorboard; " \
        "print(time.perf_counter() - t)"


def record(generation: int, members: int) -> GenerationRecord:
    hparams = {"lr": 1e-3, "batch_size": 256, "learn_step": 128, "ent_coef": 0.0,
               "clip_coef": 0.2, "gae_lambda": 0.95, "update_epochs": 4}
    rows = tuple(MemberRecord(id=i, parent_id=None, fitness=float(i + generation),
                              eval_returns=(float(i),), train_return=None, finite=True,
                              env_steps=1000 * generation, hparams=hparams, spec={},
                              mutation=None) for i in range(members))
    return GenerationRecord(generation=generation, total_env_steps=1000 * members * generation,
                            wall_s=1.0, steps_per_s=1000.0, best_fitness=float(members),
                            elite_fitness=float(members), members=rows,
                            elite_metrics={"alive": 1.0, "orbits": 2.0})


def ms_per_generation(generations: int, members: int) -> dict[str, float]:
    records = [record(g, members) for g in range(generations)]
    start = time.perf_counter()
    points = [generation_point(r, HP_NAMES) for r in records]
    made = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        tracker = TensorBoardTracker(Path(tmp), purge_step=0)
        start = time.perf_counter()
        for point in points:
            tracker.write(point)
        written = time.perf_counter() - start
        tracker.close()
    return {"scalars": len(points[0].scalars), "point_ms": round(made / generations * 1e3, 3),
            "write_ms": round(written / generations * 1e3, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--members", type=int, nargs="+", default=[4, 16, 64])
    args = parser.parse_args()
    result = {f"P={p}": ms_per_generation(args.generations, p) for p in args.members}
    imported = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True,
                              text=True).stdout
    result["import_summary_writer_ms"] = round(float(imported) * 1e3, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
