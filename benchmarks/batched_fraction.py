"""The fraction of member-updates that train batched, from a run's metrics.jsonl.

Mutations change shapes (architecture, new_layer) and structural hyperparameters
(hyperparameter), which splits the population into groups that cannot stack. Per generation,
the logged members (spec, hparams) are rebuilt as agents and grouped by `group_members` itself,
then chunked as `plan_tasks` chunks them for `--workers` workers: a member trains batched when
its chunk reaches the engine's minimum (`batched`: 2, `auto`: AUTO_MIN_GROUP). Every member
runs the same number of updates per generation, so member counts weigh updates. The last line
is JSON.

    python benchmarks/batched_fraction.py RUN_DIR [--workers 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.batched import group_members
from evopop.config import load_config
from evopop.envs import make_env
from evopop.evolution.engine import Engine, min_group
from evopop.evolution.plan import chunk_groups
from evopop.records import GenerationRecord
from evopop.rundir import RunDir


def _groups(record: GenerationRecord, spaces: tuple) -> list[list[int]]:
    agents = [Agent(*spaces, NetSpec.from_dict(m.spec), PPOParams.from_dict(m.hparams))
              for m in record.members]
    return group_members(agents)


def _batched(groups: list[list[int]], engine: Engine, workers: int) -> int:
    return sum(len(c) for c in chunk_groups(groups, workers) if len(c) >= min_group(engine))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--workers", type=int, default=2, help="the pool the chunks fill")
    args = parser.parse_args()
    run_dir = RunDir(args.run_dir)
    env = make_env(load_config(run_dir.config).env)
    spaces = env.observation_space, env.action_space
    env.close()
    rows = []
    for record in run_dir.generations():
        groups = _groups(record, spaces)
        rows.append({"generation": record.generation, "members": len(record.members),
                     "groups": sorted((len(g) for g in groups), reverse=True),
                     **{e.value: _batched(groups, e, args.workers)
                        for e in (Engine.BATCHED, Engine.AUTO)}})
        print(rows[-1], flush=True)
    total = sum(r["members"] for r in rows)
    fractions = {e.value: round(sum(r[e.value] for r in rows) / total, 3)
                 for e in (Engine.BATCHED, Engine.AUTO)}
    print(json.dumps({"benchmark": "batched_fraction", "run_dir": str(args.run_dir),
                      "workers": args.workers, "generations": len(rows),
                      "member_updates": total, "fraction_batched": fractions}))


if __name__ == "__main__":
    main()
