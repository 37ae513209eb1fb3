"""Reaching a Ray cluster: its settings, and the one place that imports ray (only when asked).

The core never imports ray; `backend: ray` and `env.env_worker_backend: ray` come here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from types import ModuleType
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from evopop.errors import UserError


class RayError(UserError):
    """Ray is missing, or the cluster cannot be reached or cannot fit one member."""


BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
"""Ray's own resource names: set through the num_* settings, never as custom resources."""
ResourceName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RaySettings(BaseModel):
    """The config's `ray` section: where the cluster is and what each member (and env worker)
    reserves on it (read when `backend: ray` or `env.env_worker_backend: ray`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    address: str | None = Field(
        None, description="none: start a local Ray; 'auto' or host:port: join that cluster")
    num_cpus_per_member: float = Field(1.0, gt=0, description="CPUs reserved per member actor")
    num_gpus_per_member: float = Field(0.0, ge=0, description="GPUs per member (fractional ok)")
    num_cpus_per_env_worker: float = Field(
        1.0, gt=0, description="CPUs per env worker actor (independent stepping on Ray)")
    resources_per_member: dict[ResourceName, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, max_length=16,
        description="custom Ray resources each member actor reserves, e.g. {evopop: 1}: "
        "members go only to nodes started with ray start --resources='{\"evopop\": N}'")

    @field_validator("resources_per_member")
    @classmethod
    def _custom_only(cls, value: dict[str, float]) -> dict[str, float]:
        builtin = sorted(set(value) & set(BUILTIN_RESOURCES))
        if builtin:
            raise ValueError(f"{builtin} are Ray's own resources: use num_cpus_per_member / "
                             "num_gpus_per_member")
        return value


def import_ray() -> ModuleType:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise RayError("backend 'ray' needs ray: pip install 'evopop[ray]'") from None


def connect(address: str | None) -> bool:
    """Connects to (or starts) Ray unless already connected; returns whether we connected.

    The driver's environment (e.g. BSK_SUPPORT_DATA_CACHE) is passed on to the workers.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    env_vars = {k: v for k, v in os.environ.items() if k.startswith(("BSK_", "EVOPOP_"))}
    try:
        ray.init(address=address, include_dashboard=False, logging_level="ERROR",
                 runtime_env={"env_vars": env_vars} if env_vars else None)
    except (ConnectionError, ValueError, RuntimeError) as error:
        where = address or "a local instance"
        raise RayError(f"cannot start or reach Ray at {where}: {error}") from None
    return True


def totals() -> dict[str, float]:
    """The connected cluster's resources (CPU, GPU, custom ones), over its living nodes."""
    return {name: float(amount) for name, amount in import_ray().cluster_resources().items()}


def free_cpus() -> float:
    return float(import_ray().available_resources().get("CPU", 0.0))


def has_room(needs: Mapping[str, float]) -> bool:
    """Whether the cluster has `needs` free right now (summed over nodes: a fit, not a
    placement promise)."""
    free = import_ray().available_resources()
    return all(float(free.get(name, 0.0)) >= amount for name, amount in needs.items())


def deaths(ray: ModuleType) -> tuple[type[Exception], ...]:
    """Errors meaning "the worker (or its node, or the result) is gone", beyond RayActorError:
    the work is redone elsewhere rather than failing the run."""
    errors = ray.exceptions
    return (errors.ObjectLostError, errors.NodeDiedError, errors.WorkerCrashedError,
            errors.OutOfMemoryError)
