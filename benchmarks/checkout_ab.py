"""Before and after: W1 end to end with this checkout against an older commit, alternating.

Usage: python benchmarks/checkout_ab.py --base REV [--pairs 4] [--generations 4] [--set K=V ...]

The older commit is checked out into a temporary git worktree. Both run `evopop.cli train
configs/agilerl_tutorial.yaml` as whole processes with this interpreter, from inside the
checkout (`checkout_process`) for `--generations` W1 generations per member (`--set` overrides
go to both, e.g. `--set evolution.population_size=16`), in turn: base, this, base, this, ...
Prints each pair's wall seconds and the ratio this / base, their median, and whether the elite
hashes match (a change that keeps every bit keeps the elite; one that rounds differently, such
as another kernel, does not). Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_GENERATION = 16 * 1024


def checkout_process(checkout: Path) -> dict[str, Any]:
    """`subprocess.run` arguments that make `python -m` import evopop from `checkout`: `-m` puts
    the working directory first on sys.path, ahead of PYTHONPATH, so both are the checkout
    (before 2026-12-06 only PYTHONPATH was, and from the repo root both sides ran its code)."""
    return {"cwd": checkout, "env": {**os.environ, "PYTHONPATH": str(checkout)}}


def timed_train(checkout: Path, steps: int, run_dir: Path,
                overrides: Sequence[str] = ()) -> tuple[float, str]:
    """(wall seconds, elite hash) of one whole `evopop train` process from `checkout`."""
    cmd = [sys.executable, "-m", "evopop.cli", "train",
           str(checkout / "configs" / "agilerl_tutorial.yaml"), "--set", f"max_steps={steps}",
           *(arg for kv in overrides for arg in ("--set", kv)),
           "--run-dir", str(run_dir), "--quiet"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **checkout_process(checkout))
    wall = time.perf_counter() - start
    return wall, json.loads((run_dir / "summary.json").read_text())["elite_sha256"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the older commit")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for both sides (repeatable)")
    args = parser.parse_args()
    steps = args.generations * STEPS_PER_GENERATION
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        args.base], check=True, capture_output=True)
        try:
            pairs = []
            for pair in range(args.pairs):
                before, base_hash = timed_train(base, steps, Path(tmp) / f"b{pair}", args.set)
                after, this_hash = timed_train(ROOT, steps, Path(tmp) / f"a{pair}", args.set)
                pairs.append({"base_s": round(before, 2), "this_s": round(after, 2),
                              "ratio": round(after / before, 3),
                              "same_elite": base_hash == this_hash})
                print(f"pair {pair + 1}: base {before:.1f} s, this {after:.1f} s, "
                      f"ratio {after / before:.3f}, same elite: {base_hash == this_hash}",
                      flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(base)], check=False, capture_output=True)
    print(json.dumps({"base": args.base, "generations": args.generations, "set": args.set,
                      "pairs": pairs,
                      "median_ratio": statistics.median(p["ratio"] for p in pairs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
