"""The one way to get training rollouts for an env spec: in-process vector envs, or independent
env workers as local processes or Ray actors."""

from __future__ import annotations

import os
from functools import partial

from evopop.envs.make import env_factory, make_vec_env, seeded
from evopop.envs.spec import EnvSpec, Vectorization
from evopop.execution.cluster import RayError, RaySettings, connect, free_cpus
from evopop.execution.placement import Placement
from evopop.execution.pool import WorkerPool
from evopop.execution.processes import ProcessPool
from evopop.execution.worker import HandlerFactory
from evopop.rollouts.env_worker import EnvWorker
from evopop.rollouts.lockstep import timed_vector_env
from evopop.rollouts.source import Rollouts
from evopop.rollouts.timeouts import StepTimeouts
from evopop.rollouts.vector import VectorRollouts
from evopop.rollouts.workers import WorkerRollouts, split_envs

PLACEMENT_TIMEOUT_S = 60.0
"""How long env worker actors may wait for CPUs before the run stops with a message."""


def _ray_pool(factories: list[HandlerFactory], ray: RaySettings) -> WorkerPool:
    """Env worker actors, spread over nodes; fails clearly when the cluster cannot fit them
    (e.g. members hold every CPU) instead of waiting forever for a rollout."""
    from evopop.execution.ray_pool import RayPool, Reservation

    reservation = Reservation(cpus=ray.num_cpus_per_env_worker, spread=True)
    pool = RayPool(factories, [reservation] * len(factories), connect(ray.address))
    missing = pool.unplaced(PLACEMENT_TIMEOUT_S)
    if missing:
        free = free_cpus()
        pool.close(abort=True)  # a graceful close would wait on the actors never placed
        raise RayError(
            f"{missing} of {len(factories)} env worker actors could not be placed within "
            f"{PLACEMENT_TIMEOUT_S:.0f} s (each needs {ray.num_cpus_per_env_worker} CPUs; "
            f"{free} are free): lower workers, env.env_workers or the ray.num_cpus_per_* "
            f"settings")
    return pool


def _worker_rollouts(env: EnvSpec, ray: RaySettings | None) -> WorkerRollouts:
    count = env.env_workers if env.env_workers is not None else min(env.num_envs,
                                                                     os.cpu_count() or 1)
    shares = split_envs(env.num_envs, count)  # a bad count fails before any env is built
    factory = env_factory(env)
    probe = factory()
    spaces = probe.observation_space, probe.action_space
    probe.close()
    factories: list[HandlerFactory] = [partial(EnvWorker, factory, n) for n in shares]
    if env.env_worker_backend is Placement.RAY:
        pool = _ray_pool(factories, ray or RaySettings())
    else:
        pool = ProcessPool(factories, daemon=True, name="evopop-env-worker")
    return WorkerRollouts(pool, shares, *spaces, StepTimeouts(env.step_timeout_s,
                                                              env.reset_timeout_s))


def lockstep_rollouts(env: EnvSpec, seed: int | None = None) -> VectorRollouts:
    """A lockstep vector env (see `make_vec_env`); `async` with `env.step_timeout_s` replaces
    a copy that hangs (`evopop.rollouts.lockstep`)."""
    if env.vectorization is Vectorization.ASYNC and env.step_timeout_s is not None:
        return VectorRollouts(seeded(timed_vector_env(env, env.step_timeout_s), seed))
    return VectorRollouts(make_vec_env(env, seed=seed))


def make_rollout_envs(env: EnvSpec, ray: RaySettings | None = None,
                      seed: int | None = None) -> Rollouts:
    """Rollouts for training: lockstep vector envs (`lockstep_rollouts`) or, for
    `independent`, `env.env_workers` env workers (default: one per core, at most one per copy)
    as local processes or as Ray actors (`ray`: the run's Ray settings). `seed` only matters
    for lockstep envs: `train_agent` restarts both kinds with its own seeds anyway."""
    if env.vectorization is not Vectorization.INDEPENDENT:
        return lockstep_rollouts(env, seed)
    return _worker_rollouts(env, ray)
