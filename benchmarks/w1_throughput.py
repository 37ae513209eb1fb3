"""W1 throughput: evopop and AgileRL on AgileRL's recurrent-PPO tutorial workload, side by side.

Usage: python benchmarks/w1_throughput.py [--pairs 3] [--generations 3] [--parallel-members 2]
                                          [--backend processes|local|ray] [--evopop-only]

Each program runs as its own process, end to end, on the same budget of env steps per member
(generations x 16 envs x 1024 steps): evopop as `evopop train configs/agilerl_tutorial.yaml`
with this interpreter, AgileRL as benchmarks/peers/agilerl_w1.py (the tutorial as written) in
the venv benchmarks/setup_peers.sh makes. Runs alternate AgileRL, evopop, AgileRL, evopop, ...
for `--pairs` pairs. Rates count population training env steps: `end_to_end` over the process's
wall time (start-up and imports included), `own` over the program's own timing (evopop's
generation loop, `summary.json` wall_s; AgileRL's `train_on_policy` call), and for evopop
`steady` over generations 2..N. `ratio` is the median over pairs of evopop's end-to-end rate
over AgileRL's. `--evopop-only` runs evopop alone, once per pair. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "agilerl_tutorial.yaml"
AGILERL_PYTHON = ROOT / "benchmarks" / ".peers" / "agilerl-venv" / "bin" / "python"
AGILERL_SCRIPT = ROOT / "benchmarks" / "peers" / "agilerl_w1.py"
STEPS_PER_GENERATION = 16 * 1024  # one rollout per member per generation, in both programs


@dataclass
class Measurement:
    """One end-to-end run of one program."""

    program: str
    env_steps: int
    wall_s: float  # the subprocess, measured here
    own_s: float  # the program's own timing of its training loop
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def end_to_end(self) -> float:
        return self.env_steps / self.wall_s

    @property
    def own(self) -> float:
        return self.env_steps / self.own_s

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "wall_s": round(self.wall_s, 2),
                "end_to_end_env_steps_per_s": round(self.end_to_end, 1),
                "own_env_steps_per_s": round(self.own, 1)}


def timed_run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    """Runs `cmd` with stdout+stderr to `log`; returns its wall seconds, exits if it fails."""
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=out,
                              stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    if code != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        sys.exit(f"{' '.join(cmd)} failed ({code}):\n{tail}")
    return wall


def steady_rate(metrics: Path) -> float | None:
    """Env-steps/s over generations 2..N of evopop's metrics.jsonl (no start-up at all)."""
    lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    first, last = lines[0], lines[-1]
    return ((last["total_env_steps"] - first["total_env_steps"])
            / (last["wall_s"] - first["wall_s"]))


def run_evopop(steps: int, args: argparse.Namespace, tmp: Path) -> Measurement:
    """`evopop train` of this checkout, in a fresh run dir; figures from its summary.json."""
    run_dir = tmp / "evopop-run"
    cmd = [sys.executable, "-m", "evopop.cli", "train", str(CONFIG),
           "--set", f"max_steps={steps}", "--seed", str(args.seed),
           "--parallel-members", str(args.workers),
           "--backend", args.backend, "--run-dir", str(run_dir), "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    wall = timed_run(cmd, ROOT, env, tmp / "evopop.log")
    summary = json.loads((run_dir / "summary.json").read_text())
    steady = steady_rate(run_dir / "metrics.jsonl")
    return Measurement("evopop", summary["total_env_steps"], wall, summary["wall_s"], {
        "generations": summary["generations"], "elite_fitness": summary["elite_fitness"],
        "steady_env_steps_per_s": round(steady, 1) if steady else None})


def last_json_line(text: str) -> dict[str, Any]:
    """The last line of `text` that is a JSON object (stderr may end after stdout)."""
    return json.loads(next(line for line in reversed(text.splitlines())
                           if line.startswith("{")))


def run_agilerl(steps: int, tmp: Path) -> Measurement:
    """The AgileRL tutorial in its own venv; figures from its JSON line."""
    log = tmp / "agilerl.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    wall = timed_run([str(AGILERL_PYTHON), str(AGILERL_SCRIPT), "--steps", str(steps)],
                     tmp, env, log)
    report = last_json_line(log.read_text())
    return Measurement("agilerl", report["env_steps"], wall, report["train_s"],
                       {"version": report["version"], "in_process_wall_s": report["wall_s"]})


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_commit() -> str:
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True).stdout
    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def print_table(pairs: list[list[Measurement]]) -> None:
    print(f"{'pair':>4} {'program':<8} {'env steps':>10} {'wall s':>8} {'own s':>8} "
          f"{'e2e steps/s':>12} {'own steps/s':>12}")
    for i, pair in enumerate(pairs, 1):
        for m in pair:
            print(f"{i:>4} {m.program:<8} {m.env_steps:>10,d} {m.wall_s:>8.1f} {m.own_s:>8.1f} "
                  f"{m.end_to_end:>12.0f} {m.own:>12.0f}")


def pair_record(pair: list[Measurement]) -> dict[str, Any]:
    runs = {m.program: m for m in pair}
    record: dict[str, Any] = {name: m.record() for name, m in runs.items()}
    if len(runs) == 2:
        record["ratio"] = round(runs["evopop"].end_to_end / runs["agilerl"].end_to_end, 3)
        record["own_ratio"] = round(runs["evopop"].own / runs["agilerl"].own, 3)
    return record


def median_rate(pairs: list[list[Measurement]], program: str) -> float:
    return round(statistics.median(m.end_to_end for p in pairs for m in p
                                   if m.program == program), 1)


def summary(pairs: list[list[Measurement]], args: argparse.Namespace, steps: int) -> dict:
    records = [pair_record(p) for p in pairs]
    out: dict[str, Any] = {
        "workload": "W1 AgileRL recurrent-PPO tutorial, PendulumNoVel-v1",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "steps_per_member": steps, "parallel_members": args.workers, "backend": args.backend,
        "evopop_env_steps_per_s": median_rate(pairs, "evopop"),
    }
    if not args.evopop_only:
        out["agilerl_env_steps_per_s"] = median_rate(pairs, "agilerl")
        out["ratio"] = round(statistics.median(r["ratio"] for r in records), 3)
        out["own_ratio"] = round(statistics.median(r["own_ratio"] for r in records), 3)
    out["pairs"] = records
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--generations", type=int, default=3,
                        help=f"budget: generations x {STEPS_PER_GENERATION} env steps per member")
    parser.add_argument("--parallel-members", dest="workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backend", default="processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evopop-only", action="store_true", help="no AgileRL runs")
    args = parser.parse_args()
    if not args.evopop_only and not AGILERL_PYTHON.exists():
        sys.exit("AgileRL venv missing: run `bash benchmarks/setup_peers.sh` first "
                 "(or pass --evopop-only)")
    steps = args.generations * STEPS_PER_GENERATION
    pairs = []
    for i in range(args.pairs):
        pair = []
        with tempfile.TemporaryDirectory() as tmp:
            if not args.evopop_only:
                pair.append(run_agilerl(steps, Path(tmp)))
            pair.append(run_evopop(steps, args, Path(tmp)))
        print(f"pair {i + 1}/{args.pairs}: " + ", ".join(
            f"{m.program} {m.end_to_end:.0f} env-steps/s" for m in pair), flush=True)
        pairs.append(pair)
    print_table(pairs)
    print(json.dumps(summary(pairs, args, steps)))


if __name__ == "__main__":
    main()
