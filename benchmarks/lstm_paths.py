"""Stacked recurrent cells against each member through torch's own cell, by shape.

`evopop.batched.cells.lstm_layer` runs an LSTM either stacked (batched matmuls and a dozen
elementwise ops per step for all members) or member by member through `torch.lstm` (on CPU,
oneDNN's fused LSTM). This times both, forward and backward of the outputs' sum, one thread,
the two paths alternating within each shape, for P members of hidden size H over L steps of
256 / L sequences (a W1 minibatch: 256 steps), and one inference step of 16 envs per member
(collection). GRU rows time the stacked GRU against `torch.gru` per member. Where the C loops
are built, a `native` column times them (`lstm_native`, `gru_native`; the LSTM at every length,
the GRU over sequences). The last line is JSON.

    python benchmarks/lstm_paths.py [--members 2 8 16] [--hidden 64 128] [--lengths 2 4 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable

import torch
from matmul_rate import seconds_per_call

from evopop.agents.native import library
from evopop.agents.native_gru import gru_native
from evopop.agents.native_lstm import lstm_native
from evopop.batched.cells import gru_stacked, lstm_per_member, lstm_stacked

Tensor = torch.Tensor
INPUTS = 3  # PendulumNoVel's observation
STEP_ENVS = 16


def gru_per_member(x: Tensor, h: Tensor, *weights: Tensor) -> tuple[Tensor, Tensor]:
    """The GRU counterpart of `lstm_per_member`, kept here: it loses (see the module doc)."""
    runs = [torch.gru(xp, hp.unsqueeze(0), ws, True, 1, 0.0, True, False, False)
            for xp, hp, *ws in zip(*(t.unbind(0) for t in (x, h, *weights)), strict=True)]
    return torch.stack([out for out, _ in runs]), torch.stack([h_n[0] for _, h_n in runs])


def _inputs(cell: str, p: int, length: int, batch: int, hidden: int, grad: bool) -> list[Tensor]:
    gates = (4 if cell == "lstm" else 3) * hidden
    shapes = [(p, length, batch, INPUTS), (p, batch, hidden)]
    shapes += [(p, batch, hidden)] if cell == "lstm" else []
    weights = [(p, gates, INPUTS), (p, gates, hidden), (p, gates), (p, gates)]
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=gen) * 0.1 for s in shapes] + \
        [(torch.randn(s, generator=gen) * 0.1).requires_grad_(grad) for s in weights]


def _ms(fn: Callable[..., tuple[Tensor, ...]], args: list[Tensor], grad: bool,
        seconds: float) -> float:
    def once() -> None:
        out = fn(*args)[0]
        if grad:
            out.sum().backward()

    return 1e3 * seconds_per_call(once, seconds)


def row(cell: str, p: int, hidden: int, length: int, repeats: int,
        seconds: float) -> dict[str, object]:
    """One shape: median ms of each path over `repeats` alternations, and per-member/stacked."""
    step = length == 1
    batch = STEP_ENVS if step else 256 // length
    paths = {"stacked": lstm_stacked, "per_member": lstm_per_member} if cell == "lstm" else \
        {"stacked": gru_stacked, "per_member": gru_per_member}
    args = _inputs(cell, p, length, batch, hidden, grad=not step)
    if library() is not None and (cell == "lstm" or not step):  # an LSTM at every length
        paths["native"] = lstm_native if cell == "lstm" else gru_native
    times: dict[str, list[float]] = {name: [] for name in paths}
    with torch.inference_mode(step):
        for _ in range(repeats):
            for name, fn in paths.items():
                times[name].append(_ms(fn, args, not step, seconds))
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {"cell": cell, "P": p, "H": hidden, "L": length, "B": batch,
            "pass": "inference step" if step else "forward+backward",
            **{f"{name}_ms": round(v, 3) for name, v in ms.items()},
            "per_member_over_stacked": round(ms["per_member"] / ms["stacked"], 2),
            **({"per_member_over_native": round(ms["per_member"] / ms["native"], 2),
                "stacked_over_native": round(ms["stacked"] / ms["native"], 2)}
               if "native" in ms else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[2, 8, 16])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2, 4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.3, help="per timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for cell in ("lstm", "gru"):
        hiddens = args.hidden if cell == "lstm" else args.hidden[:1]
        for hidden in hiddens:
            for p in args.members:
                for length in [1, *args.lengths]:
                    rows.append(row(cell, p, hidden, length, args.repeats, args.seconds))
                    print(rows[-1], flush=True)
    print(json.dumps({"benchmark": "lstm_paths", "threads": 1, "rows": rows}))


if __name__ == "__main__":
    main()
