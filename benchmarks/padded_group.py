"""Members of other widths: one padded group against the members one by one, and apart.

W1 member settings (LSTM, head of one layer, PendulumNoVel-v1, 16 envs x learn_step 1024,
batch 256, 4 epochs, one torch thread): for each case of hidden sizes, one rollout and update
per member as `evopop train` runs them, timed three ways, alternating over `--repeats`:
`alone` (`train_agent` per member on its own envs), `padded` (one `train_group` of all of them
on one shared env, padded to the widest: `evopop.batched.padding`) and `apart` (one
`train_group` per distinct width, each unpadded). The default cases: W1's pair after a
`shrink_hidden` mutation (64 and 8), and one wide member among narrow ones (256 and seven 16s),
where padding makes every member compute at 256.

    python benchmarks/padded_group.py [--cases 64,8 256,16,16,16,16,16,16,16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.agents.train import train_agent
from evopop.envs import make_vec_env
from evopop.execution.worker import set_one_thread
from evopop.rollouts import VectorRollouts
from evopop.rollouts.group_train import train_group
from evopop.rollouts.shared import SharedRollouts

ENV_ID = "PendulumNoVel-v1"
NUM_ENVS = 16
PARAMS = PPOParams(lr=1e-3, learn_step=1024, batch_size=256, update_epochs=4, gamma=0.9,
                   max_seq_len=16, normalize_obs=True)
STEPS = PARAMS.learn_step * NUM_ENVS  # one rollout and update per member


def _agents(hidden: list[int]) -> list[Agent]:
    probe = make_vec_env(ENV_ID, 1)
    spaces = probe.single_observation_space, probe.single_action_space
    probe.close()
    return [Agent(*spaces, NetSpec(cell="lstm", hidden_size=h, head=(128,), activation="relu",
                                   shared_encoder=True), PARAMS, seed=i)
            for i, h in enumerate(hidden)]


def _alone(agents: list[Agent]) -> None:
    for i, agent in enumerate(agents):
        source = VectorRollouts(make_vec_env(ENV_ID, NUM_ENVS))
        train_agent(agent, source, STEPS, 10 + i)
        source.close()


def _group(agents: list[Agent], seeds: list[int]) -> None:
    source = SharedRollouts(make_vec_env(ENV_ID, NUM_ENVS * len(agents)), len(agents))
    train_group(agents, source, STEPS, seeds)
    source.close()


def _padded(agents: list[Agent]) -> None:
    _group(agents, [10 + i for i in range(len(agents))])


def _apart(agents: list[Agent]) -> None:
    widths = sorted({a.spec.hidden_size for a in agents})
    for width in widths:
        rows = [i for i, a in enumerate(agents) if a.spec.hidden_size == width]
        if len(rows) == 1:
            _alone([agents[rows[0]]])
        else:
            _group([agents[i] for i in rows], [10 + i for i in rows])


WAYS: dict[str, Callable[[list[Agent]], None]] = {
    "alone": _alone, "padded": _padded, "apart": _apart}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["64,8", "256,16,16,16,16,16,16,16"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    set_one_thread()
    rows = []
    for case in args.cases:
        hidden = [int(h) for h in case.split(",")]
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(args.repeats):
            for way, run in WAYS.items():
                agents = _agents(hidden)
                start = time.perf_counter()
                run(agents)
                times[way].append(round(time.perf_counter() - start, 3))
        row = {"hidden": hidden, "seconds": times,
               "padded_over_alone": round(statistics.median(times["padded"])
                                          / statistics.median(times["alone"]), 3),
               "padded_over_apart": round(statistics.median(times["padded"])
                                          / statistics.median(times["apart"]), 3)}
        print(row, flush=True)
        rows.append(row)
    print(json.dumps({"benchmark": "padded_group", "env": ENV_ID, "num_envs": NUM_ENVS,
                      "cases": rows}))


if __name__ == "__main__":
    main()
