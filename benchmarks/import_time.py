"""Import time of evopop entry points, each in a fresh interpreter (median of 5).

Usage: python benchmarks/import_time.py

`import evopop` and `import evopop.cli` must stay light: torch, gymnasium and matplotlib are
imported only by the commands that need them. The heavy libraries are timed too: what the fork
server imports once (torch; envpool, whole or through `evopop.envs.envpool_import`, whose
cost is its time less `evopop.envs`'s) and the `torch._dynamo` (after torch) that
`torch.optim`'s wrappers used to import in every process. Last line: JSON (milliseconds).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

MODULES = ("evopop", "evopop.cli", "evopop.agents", "torch", "envpool", "evopop.envs",
           "evopop.envs.envpool_import", "torch, torch._dynamo")
PROBE = "import time; t = time.perf_counter(); import {0}; print(time.perf_counter() - t)"


def median_ms(module: str, repeats: int = 5) -> float:
    runs = [float(subprocess.run([sys.executable, "-c", PROBE.format(module)], check=True,
                                 capture_output=True, text=True).stdout) for _ in range(repeats)]
    return round(statistics.median(runs) * 1000, 1)


if __name__ == "__main__":
    print(json.dumps({module: median_ms(module) for module in MODULES}))
