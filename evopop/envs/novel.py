"""Velocity-masked ("NoVel") variants of the classic-control and Box2D tasks as Gymnasium ids.

These are the standard memory benchmarks for recurrent agents (AgileRL's recurrent-PPO tutorial
uses PendulumNoVel-v1). Registering them as ids lets configs, vector-env workers and agent files
refer to them by name.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym
from gymnasium.error import DependencyNotInstalled

from evopop.wrappers import MaskVelocity

NOVEL_IDS: dict[str, str] = {
    "CartPoleNoVel-v1": "CartPole-v1",
    "PendulumNoVel-v1": "Pendulum-v1",
    "MountainCarNoVel-v0": "MountainCar-v0",
    "MountainCarContinuousNoVel-v0": "MountainCarContinuous-v0",
    "AcrobotNoVel-v1": "Acrobot-v1",
    "LunarLanderNoVel-v3": "LunarLander-v3",
    "LunarLanderContinuousNoVel-v3": "LunarLanderContinuous-v3",
}
_BOX2D_BASE_IDS = frozenset({"LunarLander-v3", "LunarLanderContinuous-v3"})


def box2d_available() -> bool:
    """Whether the optional Box2D physics engine can be imported (the `box2d` extra)."""
    return importlib.util.find_spec("Box2D") is not None


def make_novel_env(base_id: str, **kwargs: Any) -> gym.Env:
    """Entry point of every NoVel id: the base env with its velocity entries zeroed.

    The base env is made without a TimeLimit because the NoVel spec carries the base env's
    `max_episode_steps` itself; a single outer TimeLimit keeps `gym.make(..., max_episode_steps=n)`
    overrides working. Likewise the outer `gym.make` runs the env checker once.
    """
    if base_id in _BOX2D_BASE_IDS and not box2d_available():
        raise DependencyNotInstalled(
            f'{base_id} needs Box2D, which is not installed: pip install "evopop[box2d]" '
            '(or "gymnasium[box2d]")'
        )
    base = gym.make(base_id, max_episode_steps=-1, disable_env_checker=True, **kwargs)
    return MaskVelocity(base)


def register_novel_envs() -> None:
    """Register every NoVel id once; later calls are no-ops (no override warnings)."""
    for novel_id, base_id in NOVEL_IDS.items():
        if novel_id in gym.registry:
            continue
        base = gym.spec(base_id)
        gym.register(
            id=novel_id,
            entry_point=f"{__name__}:make_novel_env",
            reward_threshold=base.reward_threshold,
            nondeterministic=base.nondeterministic,
            max_episode_steps=base.max_episode_steps,
            kwargs={"base_id": base_id},
        )
