"""What `env.step_timeout_s` costs with `vectorization: async`: env-steps/s of evopop's timed
lockstep copies (`evopop.rollouts.lockstep`) against Gymnasium's AsyncVectorEnv, nothing hanging.

Both collect training rollouts through the path `train_agent` uses (`make_rollout_envs(...)
.collect`) with the same untrained recurrent policy, alternating A B A B. Process start-up and
one warm-up rollout are excluded. Besides env-steps/s (wall clock) it reports the learner's own
CPU time per lockstep step (`time.process_time`), which a loaded machine disturbs less.

    python benchmarks/lockstep_timeout.py [--env CartPole-v1] [--copies 8] [--steps 256]
                                          [--rollouts 4] [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.envs import EnvSpec
from evopop.execution.worker import set_one_thread
from evopop.rollouts import make_rollout_envs


def measure(spec: EnvSpec, steps: int, rollouts: int) -> tuple[float, float]:
    """(env-steps/s, learner CPU µs per lockstep step)."""
    envs = make_rollout_envs(spec)
    try:
        agent = Agent(envs.single_observation_space, envs.single_action_space,
                      NetSpec(hidden_size=64, head=(64,)), PPOParams(learn_step=steps))
        envs.start(env_seed=0, sample_seed=1)
        envs.collect(agent, steps)  # warm-up: process start, first resets
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(rollouts):
            envs.collect(agent, steps)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        return rollouts * steps * spec.num_envs / wall, cpu / (rollouts * steps) * 1e6
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    set_one_thread()
    plain = EnvSpec(id=args.env, num_envs=args.copies, vectorization="async")
    timed = plain.model_copy(update={"step_timeout_s": 5.0})
    rows = []
    for pair in range(1, args.pairs + 1):
        (a, a_cpu), (b, b_cpu) = (measure(s, args.steps, args.rollouts) for s in (plain, timed))
        rows.append({"pair": pair, "gymnasium_async": round(a), "timed_async": round(b),
                     "ratio": round(b / a, 3), "gymnasium_cpu_us_per_step": round(a_cpu),
                     "timed_cpu_us_per_step": round(b_cpu)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"median_ratio": statistics.median(r["ratio"] for r in rows),
                      "env": args.env, "copies": args.copies, "cpus": os.cpu_count(),
                      "load": os.getloadavg()[0], "python": platform.python_version()}))


if __name__ == "__main__":
    main()
