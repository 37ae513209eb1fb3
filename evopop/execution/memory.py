"""Keeps freed memory in a training process instead of handing it back to the OS at once.

A learning cycle allocates and frees the same few MiB-sized tensors thousands of times. glibc
serves blocks above its mmap threshold with fresh mappings and trims the heap's free top back
to the OS, so the next minibatch touches new pages again; in the VM this project is measured on
a minor page fault costs ~10 us, and a batched W1 generation of 8 members took 140-200k of them.
With these settings it takes ~80k (half of them imports) and ran 3-7% faster
(benchmarks/RESULTS.md). The cost is that a process keeps its peak heap until it exits.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's <malloc.h> numbers
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks above it are still mapped on their own
TRIM_THRESHOLD = 2**30  # free heap top kept before glibc trims
TOP_PAD = 64 * 2**20  # extra heap asked for at each growth: fewer brk calls


@cache
def find_mallopt() -> Callable[[int, int], int] | None:
    """glibc's `mallopt`, or None where the C library is not glibc (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def keep_freed_memory() -> bool:
    """Sets glibc's malloc to reuse freed memory; False (and nothing changed) without glibc."""
    mallopt = find_mallopt()
    if mallopt is None:
        return False
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                (_M_TOP_PAD, TOP_PAD))
    return all(mallopt(option, value) == 1 for option, value in settings)
