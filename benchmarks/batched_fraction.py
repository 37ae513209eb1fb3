"""The fraction of member-updates that train batched, from a run's metrics.jsonl.

Mutations change shapes (architecture, new_layer) and structural hyperparameters
(hyperparameter), which splits the population into groups that cannot stack (widths pad under
`auto` on a shared env: `evopop.batched.padding`; layer counts and structural hyperparameters
do not). Per generation, the logged members (spec, hparams) are rebuilt as agents and grouped
by `group_members` itself, as each engine plans them (`evopop.evolution.engine`), for the run's
env: `full` (collection and update stacked, `auto`) or `collection` (one env and one policy
step, each member's own update, `collection`). The workers do not matter: they only cut groups
into chunks. Every member runs the same number of updates per generation, so member counts
weigh updates. The last line is JSON.

    python benchmarks/batched_fraction.py RUN_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.batched import group_members
from evopop.config import load_config
from evopop.envs import make_env
from evopop.evolution.engine import Batching, Engine, batching, pads_widths
from evopop.evolution.task import SHARED_VECTORIZATIONS
from evopop.records import GenerationRecord
from evopop.rundir import RunDir


def _groups(record: GenerationRecord, spaces: tuple, pad: bool) -> list[list[int]]:
    agents = [Agent(*spaces, NetSpec.from_dict(m.spec), PPOParams.from_dict(m.hparams))
              for m in record.members]
    return group_members(agents, pad_widths=pad)


def _counts(groups: list[list[int]], engine: Engine, shared: bool) -> dict[str, int]:
    """Members per batching mode under `engine`."""
    counts = {mode.value: 0 for mode in Batching}
    for group in groups:
        counts[batching(engine, len(group), shared).value] += len(group)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    run_dir = RunDir(args.run_dir)
    config = load_config(run_dir.config)
    env = make_env(config.env)
    spaces = env.observation_space, env.action_space
    env.close()
    shared = config.env.vectorization in SHARED_VECTORIZATIONS
    engines = (Engine.AUTO, Engine.COLLECTION)
    rows = []
    for record in run_dir.generations():
        groups = {e: _groups(record, spaces, pads_widths(e, shared)) for e in engines}
        rows.append({"generation": record.generation, "members": len(record.members),
                     "groups": sorted((len(g) for g in groups[Engine.AUTO]), reverse=True),
                     **{e.value: _counts(groups[e], e, shared) for e in engines}})
        print(rows[-1], flush=True)
    total = sum(r["members"] for r in rows)
    fractions = {e.value: {mode.value: round(sum(r[e.value][mode.value] for r in rows) / total, 3)
                           for mode in Batching} for e in engines}
    print(json.dumps({"benchmark": "batched_fraction", "run_dir": str(args.run_dir),
                      "generations": len(rows), "member_updates": total,
                      "fractions": fractions}))


if __name__ == "__main__":
    main()
