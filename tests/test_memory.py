"""`keep_freed_memory`: freed memory is reused instead of faulted in anew."""

import subprocess
import sys

import pytest

from evopop.execution.memory import find_mallopt

ROUNDS = """
import resource, sys
import torch
from evopop.execution.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for _ in range(4):
    before = faults()
    blocks = [torch.ones(2**18) for _ in range(64)]  # 64 MiB in 1 MiB blocks, touched
    del blocks
    counts.append(faults() - before)
print(sum(counts[1:]))
"""
PAGES = 64 * 2**20 // 4096  # one round's pages


def _later_faults(mode: str) -> int:
    """Page faults of rounds 2-4 of allocating, touching and freeing 64 MiB, in a fresh
    process (malloc's state is per process)."""
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True,
                          text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(find_mallopt() is None, reason="the C library is not glibc")
def test_freed_memory_is_reused_without_new_page_faults():
    # glibc's defaults trim the freed 64 MiB back to the OS, so later rounds fault it in again
    assert _later_faults("default") > PAGES
    assert _later_faults("keep") < PAGES // 8
