"""One collection step of W1's recurrent encoder: `nn.LSTM` on a length-1 sequence against the
fused cell op that `evopop.agents.networks.run_rnn` takes for one step (`torch.lstm_cell`).

Usage: python benchmarks/recurrent_step.py [--envs 16] [--hidden 64] [--steps 5000]

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

from evopop.agents.networks import run_rnn


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lstm = nn.LSTM(3, args.hidden, 1)
    x = torch.randn(1, args.envs, 3)
    state = torch.zeros(2, 1, args.envs, args.hidden)
    with torch.inference_mode():
        module = best_us(lambda: lstm(x, (state[0].contiguous(), state[1].contiguous())),
                         args.steps)
        fused = best_us(lambda: run_rnn(lstm, x, state), args.steps)
    print(json.dumps({"benchmark": "recurrent_step", "envs": args.envs, "hidden": args.hidden,
                      "nn_lstm_us": module, "fused_cell_us": fused}))


if __name__ == "__main__":
    main()
