"""One core's fp32 matmul rate at the batched W1 update's shapes, against a large square one.

Why: it tells whether the update (`benchmarks/update_phases.py`) is limited by matmul
arithmetic or by everything around it. Shapes for P members (default 1 and 8): the head's
`[P, 256, 64] x [P, 64, 128]`, one LSTM step's recurrent product `[P, 16, 64] x [P, 64, 256]`
and a weight gradient `[P, 64, 256] x [P, 256, 128]`. One torch thread; GFLOP/s (2 flops per
multiply-add) over `--seconds` of each. The last line is JSON.

    python benchmarks/matmul_rate.py [--members 1 8] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch


def rate(op: Callable[[], torch.Tensor], flops: int, seconds: float) -> float:
    """GFLOP/s of `op` run back to back for about `seconds` (after one warm-up call)."""
    op()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        op()
        calls += 1
    return flops * calls / elapsed / 1e9


def shapes(p: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The update's matmul operands for `p` members, named."""
    return {"head [256x64]x[64x128]": (torch.randn(p, 256, 64), torch.randn(p, 64, 128)),
            "lstm step [16x64]x[64x256]": (torch.randn(p, 16, 64), torch.randn(p, 64, 256)),
            "weight grad [64x256]x[256x128]": (torch.randn(p, 64, 256), torch.randn(p, 256, 128))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    square = torch.randn(1024, 1024)
    rows = [{"shape": "square 1024^3", "members": 1,
             "gflop_s": round(rate(lambda: square @ square, 2 * 1024**3, args.seconds), 1)}]
    for p in args.members:
        for name, (a, b) in shapes(p).items():
            flops = 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
            rows.append({"shape": name, "members": p,
                         "gflop_s": round(rate(lambda a=a, b=b: torch.bmm(a, b), flops,
                                               args.seconds), 1)})
    for row in rows:
        print(row)
    print(json.dumps({"benchmark": "matmul_rate", "rows": rows}))


if __name__ == "__main__":
    main()
