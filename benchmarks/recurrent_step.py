"""One collection step of W1's recurrent encoder: `nn.LSTM` on a length-1 sequence against the
fused cell op that `evopop.agents.networks.run_rnn` takes for one step (`torch.lstm_cell`); and
for a group of P members, the stacked cells' step (`lstm_stacked`, `gru_stacked`) against the C
step on weights prepared once (`lstm_native_step`, `gru_native_step`: what a group's collection
and evaluation run where the C loops are built), LSTM and GRU of the same hidden size.

Usage: python benchmarks/recurrent_step.py [--envs 16] [--hidden 64] [--steps 5000]
                                           [--members 1 2 8 16]

One torch thread, inference mode, PendulumNoVel's 3 inputs; microseconds per step, the best of
3 timed loops. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch import nn

from evopop.agents.native import library
from evopop.agents.native_gru import gru_native_step
from evopop.agents.native_lstm import lstm_native_step
from evopop.agents.native_weights import StepWeights
from evopop.agents.networks import run_rnn
from evopop.batched.cells import gru_stacked, lstm_stacked


def best_us(step: Callable[[], object], steps: int) -> float:
    for _ in range(100):
        step()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - start) / steps)
    return round(min(times) * 1e6, 1)


def _weights(members: int, gates: int, hidden: int, gen: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(s, generator=gen) * 0.1 for s in
            [(members, gates, 3), (members, gates, hidden), (members, gates), (members, gates)]]


def group_step(members: int, envs: int, hidden: int, steps: int) -> dict[str, object]:
    """A group's step: the stacked cells against the C step (None where it is not built)."""
    gen = torch.Generator().manual_seed(0)
    x, h, c = (torch.randn(s, generator=gen) for s in
               [(members, 1, envs, 3), (members, envs, hidden), (members, envs, hidden)])
    lstm = _weights(members, 4 * hidden, hidden, gen)
    gru = _weights(members, 3 * hidden, hidden, gen)
    row: dict[str, object] = {
        "P": members, "lstm_stacked_us": best_us(lambda: lstm_stacked(x, h, c, *lstm), steps),
        "gru_stacked_us": best_us(lambda: gru_stacked(x, h, *gru), steps),
        "lstm_native_step_us": None, "gru_native_step_us": None}
    if library() is not None:
        lstm_w, gru_w = StepWeights.lstm(*lstm), StepWeights.gru(*gru)
        row["lstm_native_step_us"] = best_us(
            lambda: lstm_native_step(x[:, 0], h, c, lstm_w), steps)
        row["gru_native_step_us"] = best_us(lambda: gru_native_step(x[:, 0], h, gru_w), steps)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 8, 16])
    args = parser.parse_args()
    torch.set_num_threads(1)
    lstm = nn.LSTM(3, args.hidden, 1)
    x = torch.randn(1, args.envs, 3)
    state = torch.zeros(2, 1, args.envs, args.hidden)
    with torch.inference_mode():
        module = best_us(lambda: lstm(x, (state[0].contiguous(), state[1].contiguous())),
                         args.steps)
        fused = best_us(lambda: run_rnn(lstm, x, state), args.steps)
        groups = [group_step(p, args.envs, args.hidden, args.steps) for p in args.members]
    print(json.dumps({"benchmark": "recurrent_step", "envs": args.envs, "hidden": args.hidden,
                      "nn_lstm_us": module, "fused_cell_us": fused, "groups": groups}))


if __name__ == "__main__":
    main()
