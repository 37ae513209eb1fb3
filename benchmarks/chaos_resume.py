"""Chaos resume: runs SIGKILLed at random moments (the whole process group, more than once) and
resumed to the end must finish bit-identical to the uninterrupted run.

Usage: python benchmarks/chaos_resume.py [N] [--kills 2] [--seed 0] [--config PATH] [--keep DIR]

Each of the N runs trains the same small config (a population of 3 recurrent agents on
CartPoleNoVel-v1, two worker processes, several generations) as `evopop train` in its own process
group, kills the group with SIGKILL after a random delay `--kills` times (resuming after each),
then resumes to the end and compares `elite_sha256` and the metrics with one uninterrupted
reference run. Last line: JSON with how many of the N ended identical.
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
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = args.keep or Path(tempfile.mkdtemp(prefix="evopop-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    start = time.perf_counter()
    reference = fingerprint(root / "reference", finish(train(config, root / "reference", False)))
    span = time.perf_counter() - start
    identical = 0
    for i in range(args.runs):
        run_dir = root / f"chaos-{i}"
        same = fingerprint(run_dir, chaos_run(config, run_dir, args.kills, rng, span)) == reference
        identical += same
        print(f"run {i}: {'identical' if same else 'DIFFERENT'}", flush=True)
    print(json.dumps({"runs": args.runs, "kills_per_run": args.kills, "identical": identical,
                      "reference_elite_sha256": reference[0], "reference_s": round(span, 1)}))


if __name__ == "__main__":
    main()
