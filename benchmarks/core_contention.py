"""How much the machine's cores slow each other down (context for every parallel figure).

Usage: python benchmarks/core_contention.py

Times a fixed single-threaded torch loop (2000 x 256x256 matmul + tanh) alone, then two copies
at once in spawned processes. On a machine with independent cores the three times match; the
ratio max(concurrent)/alone bounds what a second worker process can add. Last line: JSON.
"""

from __future__ import annotations

import json
import multiprocessing
import time

import torch

from evopop.execution.worker import set_one_thread


def work(_: int) -> float:
    set_one_thread()
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, generator=gen)
    start = time.perf_counter()
    for _ in range(2000):
        a = torch.tanh(a @ a * 0.01)
    return time.perf_counter() - start


def main() -> None:
    alone = work(0)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        both = pool.map(work, [0, 1])
    print(json.dumps({"alone_s": round(alone, 3), "concurrent_s": [round(t, 3) for t in both],
                      "parallel_speedup": round(2 * alone / max(both), 2)}))


if __name__ == "__main__":
    main()
