"""An up-front estimate of the memory a run needs, so a config that cannot fit is refused with the
estimate in the message instead of exhausting the machine mid-run."""

from __future__ import annotations

import os

from evopop.agents.networks import parameter_count
from evopop.agents.spaces import ActionSpec
from evopop.errors import UserError
from evopop.evolution.settings import RunConfig

BYTES_PER_FLOAT = 4
COPIES_PER_PARAMETER = 6
"""Weights, gradient, two Adam moments, and the bytes of a clone and of a worker's copy."""
BYTES_PER_ENV_COPY = 4 << 20
"""A rough allowance per env copy (a classic-control env takes far less, a simulator more)."""
USABLE_FRACTION = 0.8


class MemoryBudgetError(UserError):
    """The run would need more memory than this machine has."""


def run_bytes(config: RunConfig, obs_dim: int, action: ActionSpec) -> int:
    """Members (with their optimizer state), one rollout per member training at once, and the
    env copies of those members."""
    members = config.population().population_size
    parallel = min(members, config.parallel_members or os.cpu_count() or 1)
    net = parameter_count(config.net, obs_dim, action) * COPIES_PER_PARAMETER * members
    state = config.net.state_channels * config.net.num_layers * config.net.hidden_size
    per_step = obs_dim + action.logits_dim + state + 8  # obs, action, state, scalars
    rollout = config.ppo.learn_step * config.env.num_envs * per_step * 3  # buffer + flat copies
    envs = config.env.num_envs * BYTES_PER_ENV_COPY
    return (net + parallel * rollout) * BYTES_PER_FLOAT + parallel * envs


def physical_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(config: RunConfig, obs_dim: int, action: ActionSpec) -> None:
    """Refuses a run estimated above `USABLE_FRACTION` of this machine's memory."""
    need, have = run_bytes(config, obs_dim, action), physical_bytes()
    if need > USABLE_FRACTION * have:
        raise MemoryBudgetError(
            f"this run needs about {need / 2**30:.1f} GiB (members, their rollouts and envs) "
            f"but the machine has {have / 2**30:.1f} GiB: lower net sizes, env.num_envs, "
            f"ppo.learn_step or evolution.population_size")
