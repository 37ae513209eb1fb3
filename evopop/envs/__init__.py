"""Environment construction: NoVel ids, single envs and SAME_STEP vector envs."""

from evopop.envs.make import EnvError, Vectorization, env_ids, make_env, make_vec_env
from evopop.envs.novel import NOVEL_IDS, register_novel_envs

# Importing evopop.envs is enough for plain gym.make("PendulumNoVel-v1") to work.
register_novel_envs()

__all__ = [
    "NOVEL_IDS",
    "EnvError",
    "Vectorization",
    "env_ids",
    "make_env",
    "make_vec_env",
    "register_novel_envs",
]
