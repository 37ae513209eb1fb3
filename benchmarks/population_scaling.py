"""Wall time of one generation's training for P members: batched (`train_group`) vs one by one.

W1 member settings (configs/agilerl_tutorial.yaml: PendulumNoVel-v1, 16 envs, LSTM 64, head
[128], learn_step 1024, batch 256, 4 epochs, max_seq_len 16); a W1 generation (evo_steps
10,000) is one rollout of 16,384 env steps per member, collection and update. Evaluation is
left out (it is the same per-member code on both engines). One process, one torch thread;
members differ in seed and lr. Writes `population_scaling.png` next to this file; the last
line is JSON.

    python benchmarks/population_scaling.py [--sizes 1 2 4 8 16 32] [--steps 10000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from evopop.agents import Agent
from evopop.agents.train import train_agent
from evopop.config import load_config
from evopop.envs import EnvSpec, make_vec_env
from evopop.evolution.settings import RunConfig
from evopop.execution.worker import set_one_thread
from evopop.rollouts import VectorRollouts
from evopop.rollouts.group_train import train_group
from evopop.rollouts.shared import SharedRollouts

HERE = Path(__file__).resolve().parent
W1 = HERE.parent / "configs" / "agilerl_tutorial.yaml"


def _agents(config: RunConfig, size: int) -> list[Agent]:
    probe = make_vec_env(config.env, 1)
    spaces = probe.single_observation_space, probe.single_action_space
    probe.close()
    return [Agent(*spaces, config.net, config.ppo.replace(lr=config.ppo.lr * (1 + 0.1 * p)),
                  seed=p) for p in range(size)]


def _one_by_one(env: EnvSpec, agents: list[Agent], steps: int) -> list[VectorRollouts]:
    sources = [VectorRollouts(make_vec_env(env)) for _ in agents]
    for p, (agent, source) in enumerate(zip(agents, sources, strict=True)):
        train_agent(agent, source, steps, seed=p)
    return sources


def _grouped(env: EnvSpec, agents: list[Agent], steps: int,
             batched_update: bool) -> list[SharedRollouts]:
    """The group on one env of all its members' copies, as `evopop train` runs it."""
    shared = SharedRollouts(make_vec_env(env, env.num_envs * len(agents)), len(agents))
    train_group(agents, shared, steps, seeds=list(range(len(agents))),
                batched_update=batched_update)
    return [shared]


def _batched(env: EnvSpec, agents: list[Agent], steps: int) -> list[SharedRollouts]:
    return _grouped(env, agents, steps, batched_update=True)


def _collect_batched(env: EnvSpec, agents: list[Agent], steps: int) -> list[SharedRollouts]:
    return _grouped(env, agents, steps, batched_update=False)


Engine = Callable[[EnvSpec, list[Agent], int], list[VectorRollouts] | list[SharedRollouts]]


def _timed(config: RunConfig, size: int, steps: int, run: Engine) -> tuple[float, float]:
    """(wall, CPU) seconds of one generation (env construction included for both engines);
    CPU is reported because the machine is shared."""
    agents = _agents(config, size)
    wall, cpu = time.perf_counter(), time.process_time()
    sources = run(config.env, agents, steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for source in sources:
        source.close()
    return wall, cpu


def _plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["P"] for r in rows]
    fig, (times, ratio) = plt.subplots(1, 2, figsize=(10, 4))
    times.plot(sizes, [r["one_by_one_wall_s"] for r in rows], "o-", label="one by one")
    times.plot(sizes, [r["batched_wall_s"] for r in rows], "o-", label="batched")
    times.set(xscale="log", yscale="log", xlabel="members P", ylabel="wall s per generation",
              title="W1 generation (training), one thread")
    times.legend()
    ratio.plot(sizes, [r["speedup_wall"] for r in rows], "o-")
    ratio.axhline(1.0, color="grey", lw=0.8)
    ratio.set(xscale="log", xlabel="members P", ylabel="one-by-one / batched wall",
              title="batched speed-up")
    for ax in (times, ratio):
        ax.set_xticks(sizes, [str(s) for s in sizes])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per member (default: W1's evo_steps)")
    args = parser.parse_args()
    set_one_thread()
    config = load_config(W1)
    steps = args.steps or config.population().evo_steps
    rows = []
    for size in args.sizes:
        seq = _timed(config, size, steps, _one_by_one)
        bat = _timed(config, size, steps, _batched)
        rows.append({"P": size, "one_by_one_wall_s": round(seq[0], 2),
                     "batched_wall_s": round(bat[0], 2), "speedup_wall": round(seq[0] / bat[0], 2),
                     "one_by_one_cpu_s": round(seq[1], 2), "batched_cpu_s": round(bat[1], 2),
                     "speedup_cpu": round(seq[1] / bat[1], 2)})
        print(rows[-1], flush=True)
    _plot(rows, HERE / "population_scaling.png")
    print(json.dumps({"benchmark": "population_scaling", "threads": 1, "steps": steps,
                      "rows": rows}))


if __name__ == "__main__":
    main()
