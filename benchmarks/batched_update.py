"""Wall time of one PPO update for P members: batched (`batched_ppo_update`) vs one by one.

W1 member settings (DESIGN.md §4): LSTM 64, head [128], 16 envs x learn_step 1024, batch 256,
4 epochs, max_seq_len 16, PendulumNoVel-v1 (Box actions), one torch thread. One real rollout is
collected once and given to every member (the update's cost does not depend on whose it is);
members differ in seed and lr. The `mixed` rows give members different batch sizes, to measure
padding them into one batched computation against grouping them by batch size.

    python benchmarks/batched_update.py [--sizes 1 2 4 8 16]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.agents.buffer import RolloutBuffer
from evopop.agents.ppo import ppo_update
from evopop.batched import batched_ppo_update, stack, unstack
from evopop.envs import make_vec_env
from evopop.rollouts.collect import Collector, collect
from evopop.seeding import torch_generator

ENV_ID = "PendulumNoVel-v1"
NUM_ENVS = 16
SPEC = NetSpec(cell="lstm", hidden_size=64, head=(128,))
PARAMS = PPOParams(learn_step=1024, batch_size=256, update_epochs=4, max_seq_len=16, gamma=0.9,
                   lr=1e-3)
MIXED_BATCH_SIZES = (128, 256, 256, 512)


def _rollout() -> tuple[Agent, RolloutBuffer]:
    envs = make_vec_env(ENV_ID, NUM_ENVS, seed=0)
    agent = Agent(envs.single_observation_space, envs.single_action_space, SPEC, PARAMS, seed=0)
    buf = collect(agent, Collector.start(agent, envs, seed=0), PARAMS.learn_step,
                  torch_generator(0))
    envs.close()
    return agent, buf


def _members(template: Agent, batch_sizes: list[int]) -> list[Agent]:
    agents = []
    for p, batch_size in enumerate(batch_sizes):
        params = PARAMS.replace(lr=PARAMS.lr * (1.0 + 0.1 * p), batch_size=batch_size)
        agent = Agent(template.observation_space, template.action_space, SPEC, params, seed=p)
        agent.obs_norm = copy.deepcopy(template.obs_norm)
        agents.append(agent)
    return agents


def _timed(run: Callable[[list[Agent]], None], agents: list[Agent]) -> tuple[float, float]:
    """(wall, CPU) seconds of `run(agents)`; CPU time is reported too because the 2-core
    machine is shared."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(agents)
    return time.perf_counter() - wall, time.process_time() - cpu


def _sequential(buf: RolloutBuffer, agents: list[Agent]) -> None:
    for p, agent in enumerate(agents):
        ppo_update(agent, buf, np.random.default_rng(p))


def _batched(buf: RolloutBuffer, groups: list[list[int]], agents: list[Agent]) -> None:
    for group in groups:
        members = [agents[i] for i in group]
        pop = stack(members)
        batched_ppo_update(pop, members, [buf] * len(members),
                           [np.random.default_rng(i) for i in group])
        unstack(pop, members)


def _row(label: str, size: int, seq: tuple[float, float], bat: tuple[float, float]
         ) -> dict[str, float | int | str]:
    return {"case": label, "P": size,
            "sequential_wall_s": round(seq[0], 3), "batched_wall_s": round(bat[0], 3),
            "sequential_cpu_s": round(seq[1], 3), "batched_cpu_s": round(bat[1], 3),
            "speedup_wall": round(seq[0] / bat[0], 2), "speedup_cpu": round(seq[1] / bat[1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    args = parser.parse_args()
    torch.set_num_threads(1)
    template, buf = _rollout()
    rows = []
    for size in args.sizes:
        batch_sizes = [PARAMS.batch_size] * size
        seq = _timed(partial(_sequential, buf), _members(template, batch_sizes))
        bat = _timed(partial(_batched, buf, [list(range(size))]), _members(template, batch_sizes))
        rows.append(_row("W1", size, seq, bat))
        print(rows[-1], flush=True)
    mixed = list(MIXED_BATCH_SIZES)
    by_batch = [[i for i, b in enumerate(mixed) if b == size] for size in sorted(set(mixed))]
    seq = _timed(partial(_sequential, buf), _members(template, mixed))
    padded = _timed(partial(_batched, buf, [list(range(len(mixed)))]), _members(template, mixed))
    grouped = _timed(partial(_batched, buf, by_batch), _members(template, mixed))
    rows.append(_row(f"mixed batch {mixed}, padded", len(mixed), seq, padded))
    rows.append(_row(f"mixed batch {mixed}, grouped", len(mixed), seq, grouped))
    columns = ("sequential_wall_s", "batched_wall_s", "speedup_wall",
               "sequential_cpu_s", "batched_cpu_s", "speedup_cpu")
    print(f"\n{'case':<42} {'P':>3} " + " ".join(f"{c:>17}" for c in columns))
    for r in rows:
        print(f"{r['case']:<42} {r['P']:>3} " + " ".join(f"{r[c]:>17.3f}" for c in columns))
    print(json.dumps({"benchmark": "batched_update", "threads": 1, "rows": rows}))


if __name__ == "__main__":
    main()
