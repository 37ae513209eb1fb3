"""A mutation sweep defined in Python: architecture x hyperparameter mutation probabilities.

The same comparison as configs/sweep_mutations.yaml, built as an in-memory sweep spec and run
with `evopop.sweep.run_plan`. Prints the ranked summary (summary.md) at the end.

    python scripts/sweep_mutations.py --max-steps 81920 --seeds 0 1 2 3 4
    python scripts/sweep_mutations.py --base tiny.yaml --max-steps 256 --seeds 0 --parallel-runs 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from evopop.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
GRID = {
    "evolution.mutation.architecture": [0.0, 0.2],
    "evolution.mutation.hyperparameter": [0.0, 0.3],
}


def sweep_spec(base: Path, max_steps: int, seeds: list[int]) -> dict[str, Any]:
    """What a sweep file would hold; the base path is absolute, so any working directory works."""
    return {"base": str(base.resolve()), "grid": GRID, "seeds": seeds,
            "set": {"max_steps": max_steps}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=ROOT / "configs" / "delayed_recall.yaml",
                        help="the evolutionary run config every run starts from")
    parser.add_argument("--max-steps", type=int, default=81_920, help="env steps per member")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("runs") / "sweep_mutations_py")
    parser.add_argument("--parallel-runs", type=int, default=None, help="runs at a time (default: "
                        "CPU cores)")
    parser.add_argument("--resume", action="store_true", help="continue a sweep in --out")
    return parser.parse_args()


def main() -> int:
    # Imported here, not at the top: subprocesses spawned for `async` envs re-import this
    # module, and should not pay for torch.
    from evopop.sweep import plan_sweep, run_plan
    from evopop.sweep.report import SUMMARY_MD

    args = parse_args()
    try:
        plan = plan_sweep(sweep_spec(args.base, args.max_steps, args.seeds), Path.cwd(),
                          "sweep_mutations", source="scripts/sweep_mutations.py")
        run_plan(plan, args.out, parallel_runs=args.parallel_runs, resume=args.resume)
    except UserError as err:
        print(f"sweep_mutations: {err}", file=sys.stderr)
        return 2
    print((args.out / SUMMARY_MD).read_text())
    return 0


if __name__ == "__main__":  # runs are spawned in worker processes: keep this import-safe
    sys.exit(main())
