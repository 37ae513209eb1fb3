"""Where a batched W1 update's time goes: forward and losses, backward, clipping, Adam.

One W1 rollout (configs/agilerl_tutorial.yaml) is collected for P members on one shared env;
then `batched_ppo_update` runs on copies of them `--repeats` times, with its phases timed by
wrapping the functions it calls (`member_losses`, `clip_grad_norms`, `StackedAdam.step`;
backward is `_optimizer_step` less the other two, so it includes gathering the gradients
into the `[P, D]` buffer), so the loop timed is the one `evopop train`
runs. Plain `perf_counter`: torch.profiler's `record_shapes` inflates this workload's large
ops many times over. One torch thread, glibc keeping freed memory (`prepare_trainer`).

`--cell gru` swaps W1's LSTM for a GRU of the same size; each repeat also times member 0's
own update (`ppo_update`, the single-agent path) as `single_s`. With `EVOPOP_NATIVE=0` in the
environment the C loops are off (torch's cells), for before/after pairs.

    python benchmarks/update_phases.py [--members 8] [--repeats 3] [--cell lstm|gru]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from population_scaling import W1, _agents

from evopop.agents.ppo import ppo_update
from evopop.agents.spec import CellType
from evopop.batched import batched_ppo_update, stack
from evopop.batched import ppo as batched_ppo
from evopop.batched.adam import StackedAdam
from evopop.config import load_config
from evopop.envs import make_vec_env
from evopop.execution.worker import prepare_trainer
from evopop.rollouts.shared import SharedRollouts

PHASES = {"forward_and_losses": (batched_ppo, "member_losses"),
          "clip": (batched_ppo, "clip_grad_norms"), "adam": (StackedAdam, "step"),
          "optimizer_step": (batched_ppo, "_optimizer_step")}


def _timed(totals: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cell", choices=[CellType.LSTM.value, CellType.GRU.value],
                        default=CellType.LSTM.value)
    args = parser.parse_args()
    prepare_trainer()
    config, size = load_config(W1), args.members
    net = dataclasses.replace(config.net, cell=CellType(args.cell))
    config = config.model_copy(update={"net": net})
    agents = _agents(config, list(range(size)))
    shared = SharedRollouts(make_vec_env(config.env, config.env.num_envs * size), size)
    shared.start([(p, 100 + p) for p in range(size)])
    bufs = shared.collect(stack(agents), agents, [True] * size, agents[0].params.learn_step)
    shared.close()
    totals: dict[str, float] = defaultdict(float)
    for name, (owner, attr) in PHASES.items():
        setattr(owner, attr, _timed(totals, name, getattr(owner, attr)))
    rows = []
    for _ in range(args.repeats):
        totals.clear()
        members = copy.deepcopy(agents)
        start = time.perf_counter()
        batched_ppo_update(stack(members), members, bufs,
                           [np.random.default_rng(p) for p in range(size)])
        row = {"update_s": time.perf_counter() - start, **totals}
        row["backward"] = row.pop("optimizer_step") - row["clip"] - row["adam"]
        single = copy.deepcopy(agents[0])
        start = time.perf_counter()
        ppo_update(single, bufs[0], np.random.default_rng(0))
        row["single_s"] = time.perf_counter() - start
        rows.append({k: round(v, 3) for k, v in row.items()})
        print(rows[-1], flush=True)
    print(json.dumps({"benchmark": "update_phases", "members": size, "cell": args.cell,
                      "rows": rows}))


if __name__ == "__main__":
    main()
