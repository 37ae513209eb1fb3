"""Defaults study (issue 12): evopop with its defaults, and candidate default changes, against
sb3-contrib RecurrentPPO with its defaults, on tasks nobody tuned for.

Usage: bash benchmarks/setup_peers.sh   # once: the sb3 venv
       nice -n 5 python benchmarks/defaults_study.py --steps 10240 --jobs 3
       python benchmarks/defaults_study.py --table      # the tables, from the results file

Every (task, arm, seed) is one run at `--steps` env steps per agent:
- `sb3`: RecurrentPPO("MlpLstmPolicy") with all its defaults, one env
  (benchmarks/peers/sb3_recurrent.py in benchmarks/.peers/sb3-venv);
- `evopop`: `evopop train` on the config a new user writes (the env section, `evolution: {}`,
  `max_steps`, `seed`; a population of 4 and every default); candidates add one change each;
- `random`: uniformly random actions.
Every trained agent (for evopop, the run's elite) then plays the same 20 fresh deterministic
episodes, episode j seeded 10000 + j (seeds no run trains or is selected on). Each finished run is
one JSON line in the results file; a rerun skips the runs already there, so the study can be
stopped and resumed. The table gives, per task, the mean ± std over seeds of each run's 20-episode
mean.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from enum import Enum
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SB3_PYTHON = ROOT / "benchmarks/.peers/sb3-venv/bin/python"
SB3_SCRIPT = ROOT / "benchmarks/peers/sb3_recurrent.py"
FRESH_EPISODES = 20
FRESH_SEED = 10_000  # episode j of the fresh evaluation is seeded FRESH_SEED + j
CRASH_LINE = 200  # characters of an error message kept in the results


@dataclass(frozen=True)
class Task:
    """One env of the suite: a registered id, optionally behind evopop's POMDP wrappers."""

    name: str
    env_id: str
    wrappers: tuple[Mapping[str, Any], ...] = ()

    def env_section(self) -> dict[str, Any]:
        """The `env` section a user would write for it."""
        section: dict[str, Any] = {"id": self.env_id}
        if self.wrappers:
            section["wrappers"] = [dict(w) for w in self.wrappers]
        return section


SUITE: tuple[Task, ...] = (
    Task("TMaze", "evopop/TMaze-v0"),
    Task("DelayedRecallEasy", "evopop/DelayedRecallEasy-v0"),
    Task("DelayedRecall", "evopop/DelayedRecall-v0"),
    Task("CountEvents", "evopop/CountEvents-v0"),
    Task("NoisyCue", "evopop/NoisyCue-v0"),
    Task("CartPoleNoVel", "CartPoleNoVel-v1"),
    Task("PendulumNoVel", "PendulumNoVel-v1"),
    Task("AcrobotNoVel", "AcrobotNoVel-v1"),
    Task("MountainCarContinuousNoVel", "MountainCarContinuousNoVel-v0"),
    Task("CartPoleFlicker0.2", "CartPole-v1", ({"flicker": {"p": 0.2}},)),
    Task("PendulumNoisy0.1", "Pendulum-v1", ({"noisy": {"sigma": 0.1}},)),
)
TASKS = {task.name: task for task in SUITE}


class Arm(str, Enum):
    """Who plays: a random policy, sb3's defaults, evopop's defaults, or a candidate default."""

    RANDOM = "random"
    SB3 = "sb3"
    EVOPOP = "evopop"
    EPOCHS_10 = "evopop+epochs10"
    RANDOM_INIT_HP = "evopop+random_init_hp"
    PREV_ACTION_REWARD = "evopop+prev_action_reward"
    HIDDEN_128 = "evopop+hidden128"
    LR_3E4 = "evopop+lr3e-4"
    EPOCHS_10_RANDOM_INIT_HP = "evopop+epochs10+random_init_hp"


@dataclass(frozen=True)
class Candidate:
    """One change to the minimal config: sections merged into it, wrappers appended to the
    task's own (after them: `prev_action_reward` must come last)."""

    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    wrappers: tuple[str, ...] = ()


CANDIDATES: Mapping[Arm, Candidate] = {
    Arm.EVOPOP: Candidate(),
    # sb3's 10 passes: 2.5x the gradient steps per env step, the cheapest sample efficiency
    Arm.EPOCHS_10: Candidate({"ppo": {"update_epochs": 10}}),
    # a population that starts spread over the hp space instead of four copies of one setting
    Arm.RANDOM_INIT_HP: Candidate({"evolution": {"random_init_hp": True}}),
    # the standard memory-task input: what the agent just did and what it earned
    Arm.PREV_ACTION_REWARD: Candidate(wrappers=("prev_action_reward",)),
    # sb3's LSTM is 256 wide; twice the memory of the default 64
    Arm.HIDDEN_128: Candidate({"net": {"hidden_size": 128}}),
    # sb3's learning rate
    Arm.LR_3E4: Candidate({"ppo": {"lr": 3e-4}}),
    # the two that won on most tasks alone, together
    Arm.EPOCHS_10_RANDOM_INIT_HP: Candidate({"ppo": {"update_epochs": 10},
                                             "evolution": {"random_init_hp": True}}),
}
"""Each evopop arm's additions to the minimal config."""


@dataclass(frozen=True)
class Job:
    task: Task
    arm: Arm
    seed: int
    steps: int

    @property
    def key(self) -> tuple[str, str, int, int]:
        return self.task.name, self.arm.value, self.seed, self.steps


@dataclass
class Result:
    """One finished run, as its results-file line."""

    task: str
    arm: str
    seed: int
    steps: int
    status: str  # "ok" or "crash"
    mean: float | None = None
    std: float | None = None
    returns: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int, int]:
        return self.task, self.arm, self.seed, self.steps


STUDY_DEFAULTS: Mapping[str, Mapping[str, Any]] = {"ppo": {"update_epochs": 4}}
"""The default this study changed (`ppo.update_epochs` was 4, is 10 since), pinned in every evopop
arm so that a rerun repeats the study: "evopop" is the defaults the study started from."""


def user_config(job: Job) -> dict[str, Any]:
    """The config a new user wrote: the env, a population with every default of the study's
    start, the budget."""
    candidate = CANDIDATES[job.arm]
    env = job.task.env_section()
    if candidate.wrappers:
        env["wrappers"] = [*env.get("wrappers", []), *candidate.wrappers]
    config: dict[str, Any] = {"env": env, "evolution": {}, "max_steps": job.steps,
                              "seed": job.seed}
    for additions in (STUDY_DEFAULTS, candidate.sections):
        for section, values in additions.items():
            config[section] = {**config.get(section, {}), **values}
    return config


def run_evopop(job: Job, work: Path) -> Result:
    """`evopop train` on the user's config (no plots), then the elite on the fresh episodes."""
    from evopop.atomic import atomic_write_bytes
    from evopop.config import load_config
    from evopop.execution.worker import set_one_thread
    from evopop.inference import evaluate_agent_file
    from evopop.training import run_training

    set_one_thread()
    run_dir = work / job.task.name / f"{job.arm.value}-seed{job.seed}"
    config_path = run_dir.with_suffix(".yaml")
    atomic_write_bytes(config_path, yaml.safe_dump(user_config(job)).encode())
    # One member at a time: with the per-member engine the elite does not depend on it, and the
    # study's --jobs already fill the cores.
    summary = run_training(load_config(config_path), run_dir, progress=False,
                           parallel_members=1, overwrite=True)
    report = evaluate_agent_file(run_dir / "elite.safetensors", None, FRESH_EPISODES, FRESH_SEED)
    return Result(job.task.name, job.arm.value, job.seed, job.steps, "ok", report.mean,
                  report.std, list(report.returns), summary.wall_s,
                  {"elite_fitness": summary.elite_fitness, "generations": summary.generations,
                   "total_env_steps": summary.total_env_steps})


def run_sb3(job: Job) -> Result:
    """The peer script in its own venv; its last line is the result."""
    command = [str(SB3_PYTHON), str(SB3_SCRIPT), "--env", job.task.env_id,
               "--wrappers", json.dumps([dict(w) for w in job.task.wrappers]),
               "--steps", str(job.steps), "--seed", str(job.seed),
               "--episodes", str(FRESH_EPISODES), "--eval-seed", str(FRESH_SEED)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"sb3 peer printed nothing (exit {done.returncode}): "
                           f"{done.stderr.strip()[-CRASH_LINE:]}")
    out = json.loads(lines[-1])
    extra = {k: out[k] for k in ("error", "train_wall_s", "steps_per_s") if k in out}
    return Result(job.task.name, job.arm.value, job.seed, job.steps, out["status"],
                  out.get("mean"), out.get("std"), out.get("returns", []), out["wall_s"], extra)


def run_random(job: Job) -> Result:
    """Uniformly random actions (the action space seeded with the run's seed)."""
    from evopop.envs import EnvSpec, make_env

    env = make_env(EnvSpec(**job.task.env_section()))
    env.action_space.seed(job.seed)
    returns = []
    for j in range(FRESH_EPISODES):
        env.reset(seed=FRESH_SEED + j)
        total, done = 0.0, False
        while not done:
            _, reward, term, trunc, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = bool(term or trunc)
        returns.append(total)
    env.close()
    return Result(job.task.name, job.arm.value, job.seed, job.steps, "ok",
                  float(np.mean(returns)), float(np.std(returns)), returns)


def run_job(job: Job, work: Path) -> Result:
    """One run; an exception becomes a "crash" result (recorded, not retried)."""
    began = time.perf_counter()
    try:
        if job.arm is Arm.SB3:
            return run_sb3(job)
        if job.arm is Arm.RANDOM:
            return run_random(job)
        return run_evopop(job, work)
    except Exception as error:
        message = (str(error).splitlines() or [""])[0][:CRASH_LINE]
        return Result(job.task.name, job.arm.value, job.seed, job.steps, "crash",
                      wall_s=round(time.perf_counter() - began, 1),
                      extra={"error": f"{type(error).__name__}: {message}"})


def read_results(path: Path) -> list[Result]:
    """Every complete line of the results file, the first per run (a line torn by a kill is
    skipped; two studies sharing the file may both finish a run)."""
    if not path.is_file():
        return []
    results: dict[tuple[str, str, int, int], Result] = {}
    for line in path.read_text().splitlines():
        try:
            result = Result(**json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue
        results.setdefault(result.key, result)
    return list(results.values())


def append_result(path: Path, result: Result) -> None:
    """One line per finished run, flushed to disk at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(result.__dict__) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


HEADLINE = (Arm.RANDOM, Arm.SB3, Arm.EVOPOP)
"""The comparison the study is for; candidates run after it, so a study cut short by compute
has the main table whole."""


def plan(tasks: Iterable[Task], arms: Iterable[Arm], seeds: Iterable[int], steps: int,
         done: set[tuple[str, str, int, int]]) -> list[Job]:
    """The headline arms first, then the candidates; within each, seed-major (an interrupted
    study has whole seeds), and sb3 (the slowest runs) first within a seed, for packing."""
    arms, seeds = list(arms), list(seeds)
    jobs = [Job(task, arm, seed, steps) for seed in seeds for task in tasks for arm in arms]

    def order(job: Job) -> tuple[bool, int, bool]:
        return job.arm not in HEADLINE, seeds.index(job.seed), job.arm is not Arm.SB3

    return sorted((job for job in jobs if job.key not in done), key=order)


def _cell(results: list[Result], seeds: int) -> str:
    """mean ± std over seeds of the per-run means (with the count when some seeds are still
    missing); a crash is shown as such."""
    if not results:
        return "—"
    crashes = [r for r in results if r.status != "ok"]
    if crashes:
        return f"crash ({crashes[0].extra.get('error', '?').split(':')[0]})"
    means = np.array([r.mean for r in results])
    count = f" (n={len(results)})" if len(results) < seeds else ""
    return f"{means.mean():.3g} ± {means.std():.2g}{count}"


def _scores(results: list[Result], task: str, arm: Arm, steps: int) -> list[Result]:
    return [r for r in results if r.task == task and r.arm == arm.value and r.steps == steps]


def _mean(rows: list[Result]) -> float | None:
    """None when there is nothing to compare (no runs, or a crash)."""
    if not rows or any(r.status != "ok" for r in rows):
        return None
    return float(np.mean([r.mean for r in rows]))


def table(results: list[Result], tasks: Iterable[Task], arms: list[Arm], steps: int) -> str:
    """The per-task table (markdown), then wins of each candidate over evopop's defaults and
    of each evopop arm over sb3, on the seeds both have run."""
    header = "| task | seeds | " + " | ".join(arm.value for arm in arms) + " |"
    lines = [header, "|" + "---|" * (len(arms) + 2)]
    tasks = list(tasks)
    for task in tasks:
        seeds = {r.seed for r in results if r.task == task.name and r.steps == steps}
        cells = [_cell(_scores(results, task.name, arm, steps), len(seeds)) for arm in arms]
        lines.append(f"| {task.name} | {len(seeds)} | " + " | ".join(cells) + " |")
    lines.append("")
    for arm in arms:
        if arm in (Arm.EVOPOP, Arm.RANDOM, Arm.SB3):
            continue
        lines.append(f"- {arm.value} vs evopop defaults: " + _tally(results, tasks, arm,
                                                                     Arm.EVOPOP, steps))
    for arm in arms:
        if arm in CANDIDATES:
            lines.append(f"- {arm.value} vs sb3: " + _tally(results, tasks, arm, Arm.SB3, steps))
    return "\n".join(lines)


def _tally(results: list[Result], tasks: list[Task], arm: Arm, other: Arm, steps: int) -> str:
    """Tasks where `arm`'s mean over the seeds both have run is higher, equal or lower than
    `other`'s (a crash of `other` counts as a win for `arm`)."""
    wins = ties = losses = 0
    for task in tasks:
        mine_rows = _scores(results, task.name, arm, steps)
        theirs_rows = _scores(results, task.name, other, steps)
        common = {r.seed for r in mine_rows} & {r.seed for r in theirs_rows}
        mine = _mean([r for r in mine_rows if r.seed in common])
        theirs = _mean([r for r in theirs_rows if r.seed in common])
        if mine is None or not common:
            continue
        if theirs is None or mine > theirs + 1e-9:
            wins += 1
        elif mine < theirs - 1e-9:
            losses += 1
        else:
            ties += 1
    return f"higher on {wins}, equal on {ties}, lower on {losses} tasks"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_240, help="env steps per agent")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=None,
                        help="default: the whole suite")
    parser.add_argument("--arms", nargs="+", choices=[a.value for a in Arm],
                        default=[a.value for a in Arm])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="runs at once (each uses one thread)")
    parser.add_argument("--results", type=Path,
                        default=ROOT / "benchmarks/defaults_study_results.jsonl")
    parser.add_argument("--work", type=Path, default=ROOT / "runs/defaults_study",
                        help="run directories of the evopop runs")
    parser.add_argument("--table", action="store_true", help="only print the tables")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    tasks = [TASKS[name] for name in args.tasks] if args.tasks else list(SUITE)
    arms = [Arm(a) for a in args.arms]
    if Arm.SB3 in arms and not args.table and not SB3_PYTHON.is_file():
        print(f"no sb3 venv at {SB3_PYTHON}: run bash benchmarks/setup_peers.sh",
              file=sys.stderr)
        return 2
    results = read_results(args.results)
    if not args.table:
        jobs = plan(tasks, arms, args.seeds, args.steps, {r.key for r in results})
        print(f"{len(jobs)} runs to do ({len(results)} already in {args.results})", flush=True)
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_job, job, args.work) for job in jobs]
            for future in as_completed(futures):
                result = future.result()
                append_result(args.results, result)
                results.append(result)
                print(f"{result.task} | {result.arm} | seed {result.seed}: {result.status} "
                      f"{result.mean} ({result.wall_s:.0f} s)", flush=True)
    print(f"\n{args.steps} env steps per agent, {FRESH_EPISODES} fresh episodes each\n")
    print(table(results, tasks, arms, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
