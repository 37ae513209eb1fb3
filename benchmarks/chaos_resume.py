"""Chaos resume: runs SIGKILLed at random moments (the whole process group, more than once) and
resumed to the end must finish bit-identical to the uninterrupted run.

Usage: python benchmarks/chaos_resume.py [N] [--kills 2] [--seed 0] [--keep DIR] [--tensorboard]

Each of the N runs trains the same small config (a population of 3 recurrent agents on
CartPoleNoVel-v1, two worker processes, several generations) as `evopop train` in its own process
group, kills the group with SIGKILL after a random delay `--kills` times (resuming after each),
then resumes to the end and compares `elite_sha256` and the metrics with one uninterrupted
reference run. With `--tensorboard` every run also logs to TensorBoard, and a run counts as
identical only if its event files, read back as TensorBoard shows them, hold exactly what its
metrics.jsonl charts (each generation once, float32). Last line: JSON with how many of the N
ended identical.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

CONFIG = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 4},
    "net": {"cell": "lstm", "hidden_size": 16, "head": [16]},
    "ppo": {"learn_step": 64, "batch_size": 128, "update_epochs": 2},
    "max_steps": 2048, "seed": 3, "eval_episodes": 2, "parallel_members": 2,
    "evolution": {"population_size": 3, "tournament_size": 2, "evo_steps": 256,
                  "mutation": {"none": 0.2, "architecture": 0.2, "new_layer": 0.2,
                               "parameters": 0.2, "activation": 0.1, "hyperparameter": 0.2}},
}


def train(config: Path, run_dir: Path, resume: bool) -> subprocess.Popen:
    """`evopop train` (or `--resume`) as the leader of a new process group."""
    args = ["--resume", str(run_dir)] if resume else [str(config), "--run-dir", str(run_dir)]
    return subprocess.Popen([sys.executable, "-m", "evopop.cli", "train", *args, "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have finished already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def finish(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"evopop train exited with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def fingerprint(run_dir: Path, summary: dict) -> tuple:
    """What must match: the elite's weights hash and every generation's fitness figures."""
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    fits = [(m["generation"], m["elite_fitness"], [x["fitness"] for x in m["members"]])
            for m in metrics]
    return summary["elite_sha256"], summary["total_env_steps"], fits


def events_match(run_dir: Path) -> bool:
    """The run's TensorBoard events equal what its metrics.jsonl charts, tag by tag."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    from evopop.evolution.space import DEFAULT_HP_SPACE
    from evopop.evolution.tracking import generation_point
    from evopop.rundir import RunDir

    acc = EventAccumulator(str(RunDir(run_dir).tensorboard), size_guidance={SCALARS: 0})
    acc.Reload()
    events = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in RunDir(run_dir).generations():
        point = generation_point(record, tuple(DEFAULT_HP_SPACE))
        for tag, value in point.scalars.items():
            expected.setdefault(tag, []).append((point.step, float(np.float32(value))))
    return events == expected


def chaos_run(config: Path, run_dir: Path, kills: int, rng: random.Random, span_s: float) -> dict:
    """Kills the run `kills` times at random moments within its expected span, then finishes it;
    a kill that lands before the first checkpoint restarts the run fresh."""
    for _ in range(kills):
        started = (run_dir / "checkpoint.safetensors").is_file()
        proc = train(config, run_dir, resume=started)
        time.sleep(rng.uniform(0.5, span_s))
        kill_group(proc)
        if not (run_dir / "checkpoint.safetensors").is_file():
            shutil.rmtree(run_dir)
    started = (run_dir / "checkpoint.safetensors").is_file()
    if (run_dir / "summary.json").is_file():  # the last kill came after the run ended
        return json.loads((run_dir / "summary.json").read_text())
    return finish(train(config, run_dir, resume=started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=20)
    parser.add_argument("--kills", type=int, default=2, help="SIGKILLs per run")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    parser.add_argument("--tensorboard", action="store_true",
                        help="log to TensorBoard too, and compare its events with metrics.jsonl")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = args.keep or Path(tempfile.mkdtemp(prefix="evopop-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "tensorboard": args.tensorboard}))
    start = time.perf_counter()
    reference = fingerprint(root / "reference", finish(train(config, root / "reference", False)))
    span = time.perf_counter() - start
    identical = 0
    for i in range(args.runs):
        run_dir = root / f"chaos-{i}"
        same = fingerprint(run_dir, chaos_run(config, run_dir, args.kills, rng, span)) == reference
        same = same and (not args.tensorboard or events_match(run_dir))
        identical += same
        print(f"run {i}: {'identical' if same else 'DIFFERENT'}", flush=True)
    print(json.dumps({"runs": args.runs, "kills_per_run": args.kills, "identical": identical,
                      "tensorboard": args.tensorboard,
                      "reference_elite_sha256": reference[0], "reference_s": round(span, 1)}))


if __name__ == "__main__":
    main()
