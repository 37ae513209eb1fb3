"""Wall time of one generation's training for P members, per batching mode and worker count.

W1 member settings (configs/agilerl_tutorial.yaml: PendulumNoVel-v1, 16 envs, LSTM 64, head
[128], learn_step 1024, batch 256, 4 epochs, max_seq_len 16); a W1 generation (evo_steps
10,000) is one rollout of 16,384 env steps per member, collection and update, with each
side's envs and agents built inside the timing. Evaluation is left out (`--whole` has it).
Members differ in seed and lr.

Modes (`evopop.evolution.engine.Batching`): `none` trains the members one by one
(`train_agent`), `collection` steps one env of all the chunk's copies with one batched policy
step and gives each member its own update, `full` stacks the update too. With `--workers 2`
the members are split into two chunks (as `plan_tasks` splits them) trained in two processes
at once, one torch thread each, as `evopop train` runs them; the time is from the common start
to the last process's end. Writes `population_scaling.png` next to this file; the last line
is JSON. `--target-pairs N` instead checks the issue's target alone: it alternates a P = 1
generation (one by one) with a P = 16 one as `evopop train` runs it (fully batched, two
processes) N times and prints each pair and the median ratio. `--whole` makes those pairs
whole generations as users get them: `evopop train` on the W1 config (P = 1 or 16, mutation
off so that every generation is the same work), training, evaluation (48 episodes per member),
selection and the elite's file, each side's time the median of its warm generations (the
first, which builds envs and workers, is left out) from the run's metrics.jsonl.

    python benchmarks/population_scaling.py [--sizes 1 2 4 8 16 32] [--workers 1 2] [--repeats 1]
    python benchmarks/population_scaling.py --target-pairs 5 [--whole]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evopop.agents import Agent
from evopop.agents.train import train_agent
from evopop.config import load_config
from evopop.envs import make_vec_env
from evopop.evolution.engine import Batching
from evopop.evolution.plan import chunk_groups
from evopop.evolution.settings import RunConfig
from evopop.execution.worker import prepare_trainer
from evopop.rollouts import VectorRollouts
from evopop.rollouts.group_train import train_group
from evopop.rollouts.shared import SharedRollouts

HERE = Path(__file__).resolve().parent
W1 = HERE.parent / "configs" / "agilerl_tutorial.yaml"


def _agents(config: RunConfig, members: list[int]) -> list[Agent]:
    probe = make_vec_env(config.env, 1)
    spaces = probe.single_observation_space, probe.single_action_space
    probe.close()
    return [Agent(*spaces, config.net, config.ppo.replace(lr=config.ppo.lr * (1 + 0.1 * p)),
                  seed=p) for p in members]


def _train(config: RunConfig, members: list[int], steps: int, mode: Batching) -> None:
    """One chunk's generation in `mode` (env construction included)."""
    agents, env = _agents(config, members), config.env
    if mode is Batching.NONE:
        for p, agent in zip(members, agents, strict=True):
            source = VectorRollouts(make_vec_env(env))
            train_agent(agent, source, steps, seed=p)
            source.close()
        return
    shared = SharedRollouts(make_vec_env(env, env.num_envs * len(agents)), len(agents))
    train_group(agents, shared, steps, seeds=members, batched_update=mode is Batching.FULL)
    shared.close()


def _chunk(args: tuple[RunConfig, list[int], int, Batching, object]) -> tuple[float, float]:
    """A worker process: set up, wait for the others, train; (start, end) on the shared clock."""
    config, members, steps, mode, barrier = args
    prepare_trainer()
    barrier.wait()  # type: ignore[attr-defined]
    start = time.perf_counter()  # CLOCK_MONOTONIC: one clock for every process
    _train(config, members, steps, mode)
    return start, time.perf_counter()


def timed(config: RunConfig, size: int, steps: int, mode: Batching, workers: int) -> float:
    """Wall seconds of one generation of `size` members on `workers` processes."""
    chunks = chunk_groups([list(range(size))], workers)
    context = mp.get_context("fork")
    with context.Manager() as manager:
        barrier = manager.Barrier(len(chunks))
        with context.Pool(len(chunks)) as pool:
            spans = pool.map(_chunk, [(config, c, steps, mode, barrier) for c in chunks])
    return max(end for _, end in spans) - min(start for start, _ in spans)


def _plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["P"] for r in rows})
    base = next(r["wall_s"] for r in rows if r["P"] == 1 and r["mode"] == Batching.NONE.value
                and r["workers"] == 1)
    fig, (times, ratio) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in Batching:
        for workers in sorted({r["workers"] for r in rows}):
            line = [r for r in rows if r["mode"] == mode.value and r["workers"] == workers]
            label = f"{mode.value}, {workers} process{'es' if workers > 1 else ''}"
            style = "o-" if workers > 1 else "o--"
            times.plot([r["P"] for r in line], [r["wall_s"] for r in line], style, label=label)
            ratio.plot([r["P"] for r in line], [r["wall_s"] / base for r in line], style,
                       label=label)
    times.set(xscale="log", yscale="log", xlabel="members P", ylabel="wall s per generation",
              title="W1 generation (training)")
    ratio.axhline(4.0, color="grey", lw=0.8, ls=":")
    ratio.set(xscale="log", yscale="log", xlabel="members P",
              ylabel="x a P=1 generation (one by one)",
              title="cost of P members (target: 4x at 16)")
    for ax in (times, ratio):
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def target_pairs(config: RunConfig, steps: int, pairs: int) -> dict[str, object]:
    """P = 16 (full, two processes) over P = 1 (one by one), measured alternately."""
    rows = []
    for _ in range(pairs):
        one = timed(config, 1, steps, Batching.NONE, 1)
        sixteen = timed(config, 16, steps, Batching.FULL, 2)
        rows.append({"P1_s": round(one, 2), "P16_s": round(sixteen, 2),
                     "ratio": round(sixteen / one, 2)})
        print(rows[-1], flush=True)
    return {"benchmark": "population_scaling_target", "steps": steps, "pairs": rows,
            "median_ratio": statistics.median(r["ratio"] for r in rows)}


NO_MUTATION = ("none=1.0", "architecture=0", "new_layer=0", "parameters=0", "activation=0",
               "hyperparameter=0")


def whole_generation(config: RunConfig, size: int, generations: int) -> float:
    """Median wall seconds of `evopop train`'s warm generations for a W1 population of `size`
    (a W1 generation is one rollout per member: evo_steps is below learn_step x num_envs)."""
    rollout = config.ppo.learn_step * config.env.num_envs
    sets = [f"evolution.population_size={size}", f"evolution.selection.size={min(size, 2)}",
            *(f"evolution.mutation.{m}" for m in NO_MUTATION)]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        subprocess.run([sys.executable, "-m", "evopop.cli", "train", str(W1), "--quiet",
                        "--run-dir", str(run_dir), "--steps", str(rollout * generations),
                        *(arg for kv in sets for arg in ("--set", kv))],
                       check=True, stdout=subprocess.DEVNULL)
        totals = [json.loads(line)["wall_s"]
                  for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    walls = [b - a for a, b in itertools.pairwise(totals)]  # cumulative: per generation, warm
    return statistics.median(walls)


def whole_pairs(config: RunConfig, pairs: int, generations: int = 4) -> dict[str, object]:
    """`target_pairs` for whole `evopop train` generations."""
    rows = []
    for _ in range(pairs):
        one = whole_generation(config, 1, generations)
        sixteen = whole_generation(config, 16, generations)
        rows.append({"P1_s": round(one, 2), "P16_s": round(sixteen, 2),
                     "ratio": round(sixteen / one, 2)})
        print(rows[-1], flush=True)
    return {"benchmark": "population_scaling_whole_generation", "generations": generations,
            "pairs": rows, "median_ratio": statistics.median(r["ratio"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per member (default: W1's evo_steps)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per configuration, back to back; the median is reported")
    parser.add_argument("--target-pairs", type=int, default=0,
                        help="only alternate P = 1 and P = 16 this many times (see above)")
    parser.add_argument("--whole", action="store_true",
                        help="with --target-pairs: whole `evopop train` generations")
    args = parser.parse_args()
    config = load_config(W1)
    if args.whole:
        print(json.dumps(whole_pairs(config, args.target_pairs or 3)))
        return
    steps = args.steps or config.population().evo_steps
    timed(config, 1, steps, Batching.NONE, 1)  # warm-up (first-call costs), not reported
    if args.target_pairs:
        print(json.dumps(target_pairs(config, steps, args.target_pairs)))
        return
    rows = []
    for size in args.sizes:
        for workers in args.workers:
            if workers > size:
                continue
            for mode in Batching:
                if mode is not Batching.NONE and size < 2 * workers:
                    continue  # a chunk of one member is not batched
                walls = [timed(config, size, steps, mode, workers) for _ in range(args.repeats)]
                rows.append({"P": size, "workers": workers, "mode": mode.value,
                             "wall_s": round(statistics.median(walls), 2),
                             "runs_s": [round(w, 2) for w in walls]})
                print(rows[-1], flush=True)
    _plot(rows, HERE / "population_scaling.png")
    print(json.dumps({"benchmark": "population_scaling", "steps": steps, "rows": rows}))


if __name__ == "__main__":
    main()
