"""Environment construction: NoVel ids, single envs and SAME_STEP vector envs."""

from evopop.envs.make import EnvError, env_ids, make_env, make_vec_env
from evopop.envs.memory import MEMORY_TASKS, register_memory_envs
from evopop.envs.novel import NOVEL_IDS, register_novel_envs
from evopop.envs.satellite import SATELLITE_ENV_ID, register_satellite_env
from evopop.envs.spec import EnvSpec, Vectorization

# Importing evopop.envs is enough for plain gym.make("PendulumNoVel-v1") to work; the satellite
# id is registered only where the `space` extra (bsk-rl) is installed.
register_novel_envs()
register_memory_envs()
register_satellite_env()

__all__ = [
    "MEMORY_TASKS",
    "NOVEL_IDS",
    "SATELLITE_ENV_ID",
    "EnvError",
    "EnvSpec",
    "Vectorization",
    "env_ids",
    "make_env",
    "make_vec_env",
    "register_memory_envs",
    "register_novel_envs",
    "register_satellite_env",
]
