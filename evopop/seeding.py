"""One explicit seed, split into independent streams; library code never touches global RNGs."""

from __future__ import annotations

import numpy as np
import torch


def torch_generator(seed: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


def spawn_seeds(seed: int, count: int) -> list[int]:
    """`count` statistically independent 63-bit seeds derived from one seed."""
    children = np.random.SeedSequence(int(seed)).spawn(count)
    return [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children]


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed for one (generation, member, stream) cell, independent of every other cell.

    Deriving instead of drawing means resuming at generation k needs no saved RNG state.
    """
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(1)
    return int(state[0] >> np.uint32(1))
