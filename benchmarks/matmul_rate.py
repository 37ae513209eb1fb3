"""One core's fp32 matmul rate at the batched W1 update's shapes, against a large square one.

Why: it tells whether the update (`benchmarks/update_phases.py`) is limited by matmul
arithmetic or by everything around it. Shapes for P members (default 1 and 8): the head's
`[P, 256, 64] x [P, 64, 128]`, one LSTM step's recurrent product `[P, 16, 64] x [P, 64, 256]`
and a weight gradient `[P, 64, 256] x [P, 256, 128]`. One torch thread; GFLOP/s (2 flops per
multiply-add) over `--seconds` of each. Then the whole stacked LSTM layer of one round
(`evopop.batched.cells.lstm_stacked`, the written-out cells; L = 16 steps of B = 16 sequences,
H = 64, 3 inputs), forward and backward, in ms, with the ms its recurrent matmuls alone would take
at the measured `lstm step` rate (one forward and two backward products per step): the rest is
elementwise work and per-op overhead. The last line is JSON.

    python benchmarks/matmul_rate.py [--members 1 8] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from evopop.batched.cells import lstm_stacked

LSTM_SHAPE = (16, 16, 64, 3)  # L, B, H, inputs: one W1 round's minibatch per member


def seconds_per_call(op: Callable[[], object], seconds: float) -> float:
    """Mean wall seconds of `op` run back to back for about `seconds` (after one warm-up call)."""
    op()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        op()
        calls += 1
    return elapsed / calls


def rate(op: Callable[[], torch.Tensor], flops: int, seconds: float) -> float:
    """GFLOP/s of `op` run back to back for about `seconds`."""
    return flops / seconds_per_call(op, seconds) / 1e9


def shapes(p: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The update's matmul operands for `p` members, named."""
    return {"head [256x64]x[64x128]": (torch.randn(p, 256, 64), torch.randn(p, 64, 128)),
            "lstm step [16x64]x[64x256]": (torch.randn(p, 16, 64), torch.randn(p, 64, 256)),
            "weight grad [64x256]x[256x128]": (torch.randn(p, 64, 256), torch.randn(p, 256, 128))}


def lstm_layer_ms(p: int, seconds: float) -> float:
    """ms per forward + backward of a `p`-member stacked LSTM layer at `LSTM_SHAPE`."""
    steps, batch, hidden, inputs = LSTM_SHAPE
    weights = [torch.randn(p, 4 * hidden, inputs), torch.randn(p, 4 * hidden, hidden),
               torch.randn(p, 4 * hidden), torch.randn(p, 4 * hidden)]
    weights = [(0.1 * w).requires_grad_() for w in weights]
    x, zeros = torch.randn(p, steps, batch, inputs), torch.zeros(p, batch, hidden)

    def step() -> None:
        out, _, _ = lstm_stacked(x, zeros, zeros, *weights)
        out.sum().backward()
    return 1e3 * seconds_per_call(step, seconds)


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
    steps, batch, hidden, _ = LSTM_SHAPE
    for p in args.members:
        step_rate = next(r["gflop_s"] for r in rows
                         if r["members"] == p and r["shape"].startswith("lstm step"))
        matmul_flops = 3 * steps * 2 * p * batch * hidden * 4 * hidden
        rows.append({"shape": "lstm layer forward+backward", "members": p,
                     "ms": round(lstm_layer_ms(p, args.seconds), 2),
                     "recurrent_matmuls_ms": round(matmul_flops / step_rate / 1e6, 2)})
    for row in rows:
        print(row)
    print(json.dumps({"benchmark": "matmul_rate", "rows": rows}))


if __name__ == "__main__":
    main()
