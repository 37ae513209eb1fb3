"""Where work runs: one placement enum and one worker-pool protocol (in this process, local
processes, Ray actors) for members, env workers and sweep runs alike.

Modules: `pool` (the protocol, outcomes, limits), `worker` (start-up: one torch thread, the
hosted handler), `inline` / `processes` / `ray_pool` (the implementations), `tasks`
(`map_tasks` for stateless task pools), `cluster` (reaching Ray). This is a low layer: it knows
nothing of agents, envs or evolution.
"""

from evopop.execution.placement import Placement

__all__ = ["Placement"]
