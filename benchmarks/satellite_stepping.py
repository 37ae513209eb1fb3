"""Env-steps/s of independent stepping against Gymnasium's async (lockstep) vectorization.

Both modes collect training rollouts through the same code path `train_agent` uses
(`make_rollout_envs(...).collect`), with the same untrained recurrent policy, on the bsk-rl scanning
satellite (steps of a few ms that vary with the action, ~0.1 s resets). For W workers both get W
env copies: async runs one process per copy and the learner does inference between lockstep
steps; independent runs W processes that each step one copy with their own policy copy.
Worker start-up and one warm-up rollout are excluded. For reference the first line is one copy
stepped in one process (sync, policy inference in between).
Needs bsk-rl and Basilisk support data (BSK_SUPPORT_DATA_CACHE, see README).

    python benchmarks/satellite_stepping.py [--env-workers 2 4] [--steps 256] [--rollouts 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.envs import EnvSpec, Vectorization
from evopop.envs.satellite import SATELLITE_ENV_ID, register_satellite_env
from evopop.execution.worker import set_one_thread
from evopop.rollouts import make_rollout_envs


def steps_per_second(mode: Vectorization, copies: int, steps: int, rollouts: int) -> float:
    """Env-steps/s over `rollouts` rollouts of `steps` steps on each of `copies` env copies
    (independent: one worker per copy)."""
    workers = copies if mode is Vectorization.INDEPENDENT else None
    envs = make_rollout_envs(EnvSpec(id=SATELLITE_ENV_ID, num_envs=copies, vectorization=mode,
                                     env_workers=workers))
    try:
        agent = Agent(envs.single_observation_space, envs.single_action_space,
                      NetSpec(hidden_size=64, head=(64,)), PPOParams(learn_step=steps))
        envs.start(env_seed=0, sample_seed=1)
        envs.collect(agent, steps)  # warm-up: worker imports, first resets
        start = time.perf_counter()
        for _ in range(rollouts):
            envs.collect(agent, steps)
        return rollouts * steps * copies / (time.perf_counter() - start)
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-workers", dest="workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--steps", type=int, default=256, help="steps per env per rollout")
    parser.add_argument("--rollouts", type=int, default=4, help="timed rollouts per mode")
    args = parser.parse_args()
    set_one_thread()
    if not register_satellite_env():
        raise SystemExit("needs bsk-rl: pip install 'evopop[space]'")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
          f"{args.rollouts} rollouts x {args.steps} steps per env copy, after one warm-up")
    single = steps_per_second(Vectorization.SYNC, 1, args.steps, args.rollouts)
    print(json.dumps({"one_process_steps_s": round(single, 1)}), flush=True)
    rows = []
    for workers in args.workers:
        lockstep = steps_per_second(Vectorization.ASYNC, workers, args.steps, args.rollouts)
        independent = steps_per_second(Vectorization.INDEPENDENT, workers, args.steps,
                                       args.rollouts)
        rows.append({"workers": workers, "envs": workers, "async_steps_s": round(lockstep, 1),
                     "independent_steps_s": round(independent, 1),
                     "speedup": round(independent / lockstep, 2)})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
