"""`EnvSpec`: the one description of an environment, from the config's `env` section to the
worker process that rebuilds it.

The same frozen, validated model is the config section, what vector-env creation, rollouts,
env workers, evaluation and inference take, and what an agent file records: an environment is
never passed around as loose arguments. It is plain data; `evopop.envs.make` builds envs from it.
"""

from __future__ import annotations

import json
import os
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evopop.envs.coverage import fast_unsupported
from evopop.execution.placement import Placement

MAX_ENVS = 4096
"""Most env copies per member: a config can never make evopop build millions of envs."""


class Vectorization(str, Enum):
    """How env copies are stepped: all in this process (Gymnasium's loop, or envpool's C++
    batch: `fast`), one worker process each in lockstep, or split over env workers that
    collect whole rollouts without waiting for each other (`evopop.rollouts`). `auto` is
    settled when the spec is validated: `fast` where envpool covers the env, else `sync`."""

    AUTO = "auto"
    SYNC = "sync"
    FAST = "fast"
    ASYNC = "async"
    INDEPENDENT = "independent"

    def lockstep(self) -> Vectorization:
        """The lockstep mode for code that steps all copies together (evaluation)."""
        return Vectorization.ASYNC if self is Vectorization.INDEPENDENT else self


class EnvSpec(BaseModel):
    """Which environment to train on and how to vectorise it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str = Field(description="any registered Gymnasium id, incl. evopop's NoVel ids")
    num_envs: int = Field(8, ge=1, le=MAX_ENVS,
                          description="env copies stepped together per agent")
    vectorization: Vectorization = Field(
        Vectorization.AUTO,
        description="auto (fast where envpool covers the env, else sync; settled once and "
        "saved with the run), sync (one process), fast (envpool's C++ batch in this process), "
        "async (a process per copy, lockstep) or independent (env_workers processes that each "
        "step their copies with their own policy copy)",
    )
    env_workers: int | None = Field(
        None, ge=1, le=MAX_ENVS, description="worker processes for independent stepping "
        "(default: one per core, at most num_envs)")
    env_worker_backend: Placement = Field(
        Placement.PROCESSES,
        description="independent stepping's workers: local processes or Ray actors (see ray)")
    step_timeout_s: float | None = Field(
        None, gt=0, description="async or independent stepping: an env copy slower than this "
        "per step (async: each step, an episode's closing reset included; independent: its "
        "worker's rollout, steps x this) is killed and replaced, and the rollout completes")
    reset_timeout_s: float | None = Field(
        None, gt=0, description="with step_timeout_s: time an async copy or an env worker may "
        "take to start and reset (default 60)")
    wrappers: list[str | dict[str, dict[str, Any]]] = Field(
        default_factory=list,
        description="POMDP wrappers, e.g. [mask_velocity, {noisy: {sigma: 0.1}}]; "
        "prev_action_reward (last) appends the previous action and reward",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to gym.make")
    packages: list[str] = Field(default_factory=list, description="imported to register more ids")

    @model_validator(mode="before")
    @classmethod
    def _settle_vectorization(cls, data: Any) -> Any:
        """`auto` becomes a concrete mode here, once: fast and sync envs differ in their random
        streams, so the choice is saved with the run and a resume never switches it."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            return data
        mode = data.get("vectorization", Vectorization.AUTO)
        if str(getattr(mode, "value", mode)) != Vectorization.AUTO.value:
            return data
        kwargs, packages = data.get("kwargs") or {}, data.get("packages") or []
        if not isinstance(kwargs, dict) or not isinstance(packages, list):
            return data  # field validation words the error
        wrappers = data.get("wrappers")
        if not isinstance(wrappers, (list, tuple)):
            wrappers = []  # none given, or malformed: field validation words that error
        fast = fast_unsupported(data["id"], kwargs, packages, wrappers) is None
        return {**data, "vectorization": Vectorization.FAST if fast else Vectorization.SYNC}

    @model_validator(mode="before")
    @classmethod
    def _settle_env_workers(cls, data: Any) -> Any:
        """Independent stepping's default worker count is fixed here, once, and saved with the
        run: the count shapes seeds and normalisation, so it must not change on resume or
        depend on the node a member lands on."""
        if isinstance(data, dict) and data.get("env_workers") is None and \
                str(data.get("vectorization", "")).endswith("independent"):
            num_envs = data.get("num_envs", 8)
            if isinstance(num_envs, int) and num_envs >= 1:
                data = {**data, "env_workers": min(num_envs, os.cpu_count() or 1)}
        return data

    @model_validator(mode="after")
    def _valid(self) -> EnvSpec:
        if self.env_workers is not None and self.env_workers > self.num_envs:
            raise ValueError(f"env_workers ({self.env_workers}) is larger than num_envs "
                             f"({self.num_envs}): each worker steps at least one copy")
        if self.vectorization is Vectorization.FAST:
            reason = fast_unsupported(self.id, self.kwargs, self.packages, self.wrappers)
            if reason is not None:
                raise ValueError(f"vectorization fast: {reason}")
        if self.env_worker_backend is Placement.LOCAL:
            raise ValueError("env_worker_backend must be processes or ray (env workers are "
                             "separate processes by definition)")
        return self

    def with_copies(self, num_envs: int) -> EnvSpec:
        """The same env with another number of copies (e.g. for evaluation)."""
        workers = None if self.env_workers is None else min(self.env_workers, num_envs)
        return self.model_copy(update={"num_envs": num_envs, "env_workers": workers})

    def for_evaluation(self) -> EnvSpec:
        """This env for evaluation, which steps all copies together and seeds each episode as
        it starts (a copy per episode): envpool's batch seeds its copies only when it is built,
        so here `fast` is Gymnasium's envs (the same dynamics) in this process. Evaluation
        keeps `fast` where every episode has a copy of its own (`eval_env_spec`)."""
        mode = self.vectorization.lockstep()
        return self.model_copy(update={
            "vectorization": Vectorization.SYNC if mode is Vectorization.FAST else mode})

    def key(self) -> str:
        """A stable string identity (for caching built envs)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, default=str)


def as_spec(env: EnvSpec | str) -> EnvSpec:
    """A plain id as an `EnvSpec` with every other field at its default."""
    return env if isinstance(env, EnvSpec) else EnvSpec(id=env)
