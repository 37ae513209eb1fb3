"""What many evaluation episodes cost per member, and where the time goes.

For W1-like members (configs/agilerl_tutorial.yaml: PendulumNoVel-v1, LSTM 64, head [128]) and
CartPoleNoVel-v1 members (configs/cartpole_novel.yaml: LSTM 64, head [64]), the CPU time of
one member's evaluation on 3, 10, 32 and 64 deterministic episodes: at the width a run now
uses (a copy per episode, up to 64 in process, finished copies refilled) and at the former cap
of 16 copies, and on Gymnasium's envs at the run's width (where the run's env is envpool's
`fast` batch), with the share of the time spent in the policy (`Agent.act`); and for a group of
4 copies of such a member, one after another against all at once (`evaluate_group`, one
batched policy step for the group, as the batched engine evaluates; on envpool's batch also
`evaluate_group_shared`, one env step for the group); and the same for groups of
`--group-sizes` distinct untrained members (48 episodes), whose episode lengths differ. A
CartPole member is first trained `--cartpole-steps` env steps (untrained episodes last ~10
steps, a trained one's up to 500).
One process, one torch thread; CPU seconds of this process (the machine is shared: wall time
counts other jobs' turns too), the best of `--repeats`. The last line is JSON.

    python benchmarks/eval_cost.py [--episodes 3 10 32 64] [--repeats 3] [--cartpole-steps 30000]
        [--group-sizes 2 4 8 16]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from evopop.agents import Agent
from evopop.agents.checkpoint import agent_from_bytes, agent_to_bytes
from evopop.agents.evaluation import eval_env_spec, evaluate
from evopop.agents.train import train_agent
from evopop.config import load_config
from evopop.envs import EnvSpec, make_vec_env
from evopop.envs.spec import Vectorization
from evopop.evolution.settings import RunConfig
from evopop.execution.worker import set_one_thread
from evopop.rollouts import VectorRollouts
from evopop.rollouts.group_eval import evaluate_group, evaluate_group_shared

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
FORMER_WIDTH = 16
SEED = 1000
GROUP = 4
GROUP_EPISODES = 48  # W1's evaluation


def _member(config: RunConfig, train_steps: int) -> Agent:
    envs = make_vec_env(config.env)
    agent = Agent(envs.single_observation_space, envs.single_action_space, config.net,
                  config.ppo, seed=0)
    if train_steps:
        train_agent(agent, VectorRollouts(envs), train_steps, seed=0)
    envs.close()
    return agent


def _timed(agent: Agent, spec: EnvSpec, episodes: int, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` CPU seconds of one evaluation on `spec`, its policy share and env
    steps."""
    envs = make_vec_env(spec)
    real_act, in_policy = agent.act, [0.0]

    def act(*args, **kwargs):
        start = time.process_time()
        out = real_act(*args, **kwargs)
        in_policy[0] += time.process_time() - start
        return out

    agent.act = act  # type: ignore[method-assign]
    evaluate(agent, envs, episodes, SEED)  # warm-up: first calls allocate
    best = None
    for _ in range(repeats):
        in_policy[0] = 0.0
        start = time.process_time()
        result = evaluate(agent, envs, episodes, SEED)
        cpu = time.process_time() - start
        if best is None or cpu < best["cpu_s"]:
            best = {"cpu_s": cpu, "policy_share": in_policy[0] / cpu,
                    "env_steps": int(result.lengths.sum()), "mean_return": result.mean}
    del agent.act
    envs.close()
    assert best is not None
    return best


def _copies(agent: Agent) -> list[Agent]:
    """`GROUP` copies of one member: every member plays the same episode lengths."""
    return [agent_from_bytes(agent_to_bytes(agent)) for _ in range(GROUP)]


def _distinct(config: RunConfig, size: int) -> list[Agent]:
    """`size` untrained members of distinct seeds, as a generation's group: their episodes end
    at different steps; a member that has played its episodes leaves the stack."""
    probe = make_vec_env(config.env, 1)
    spaces = probe.single_observation_space, probe.single_action_space
    probe.close()
    return [Agent(*spaces, config.net, config.ppo, seed=p) for p in range(size)]


def _group(members: list[Agent], config: RunConfig, episodes: int,
           repeats: int) -> dict[str, float]:
    """Best-of-`repeats` CPU seconds for evaluating `members`: one by one, at once on an env
    per member, and (on envpool's batch) at once on one batch of all their copies."""
    spec = eval_env_spec(config.env, episodes)
    envs = [make_vec_env(spec) for _ in members]
    runs = {"one_by_one_s": lambda: [evaluate(member, member_envs, episodes, SEED)
                                     for member, member_envs in zip(members, envs, strict=True)],
            "at_once_s": lambda: evaluate_group(members, envs, episodes, SEED)}
    if spec.vectorization is Vectorization.FAST:
        shared = make_vec_env(spec.with_copies(spec.num_envs * len(members)))
        envs.append(shared)  # closed with the others
        runs["at_once_shared_s"] = lambda: evaluate_group_shared(members, shared, episodes, SEED)
    best = dict.fromkeys(runs, float("inf"))
    evaluate_group(members, envs[: len(members)], episodes, SEED)  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - start)
    for member_envs in envs:
        member_envs.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[3, 10, 32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cartpole-steps", type=int, default=30_000)
    parser.add_argument("--group-sizes", type=int, nargs="*", default=[2, 4, 8, 16],
                        help="groups of distinct untrained members, 48 episodes, at once or not")
    args = parser.parse_args()
    set_one_thread()
    rows, groups = [], []
    for name, steps in (("agilerl_tutorial.yaml", 0), ("cartpole_novel.yaml", args.cartpole_steps)):
        config = load_config(CONFIGS / name)
        agent = _member(config, steps)
        for episodes in args.episodes:
            spec = eval_env_spec(config.env, episodes)
            width = spec.num_envs
            now = _timed(agent, spec, episodes, args.repeats)
            former = _timed(agent, spec.with_copies(min(episodes, FORMER_WIDTH)), episodes,
                            args.repeats)
            gymnasium = _timed(agent, config.env.for_evaluation().with_copies(width), episodes,
                               args.repeats)
            group = _group(_copies(agent), config, episodes, args.repeats)
            row = {"env": config.env.id, "episodes": episodes, "width": width,
                   "cpu_s": round(now["cpu_s"], 3),
                   "cpu_s_width16": round(former["cpu_s"], 3),
                   "cpu_s_gymnasium": round(gymnasium["cpu_s"], 3),
                   "ms_per_episode": round(1000 * now["cpu_s"] / episodes, 2),
                   "policy_share": round(now["policy_share"], 3),
                   "env_steps": now["env_steps"], "mean_return": round(now["mean_return"], 1),
                   "group4_one_by_one_s": round(group["one_by_one_s"], 3),
                   "group4_at_once_s": round(group["at_once_s"], 3)}
            print(f"{row['env']:18s} {episodes:3d} episodes  width {width:2d}: "
                  f"{row['cpu_s']:7.3f} s ({row['ms_per_episode']:6.2f} ms/episode, "
                  f"policy {100 * row['policy_share']:4.1f}%)  width 16: "
                  f"{row['cpu_s_width16']:7.3f} s, Gymnasium's envs {row['cpu_s_gymnasium']:7.3f} s"
                  f"  | 4 members one by one "
                  f"{row['group4_one_by_one_s']:6.3f} s, at once {row['group4_at_once_s']:6.3f} s"
                  f"  [{row['env_steps']} env steps, return {row['mean_return']}]", flush=True)
            rows.append(row)
        for size in args.group_sizes:
            group = _group(_distinct(config, size), config, GROUP_EPISODES, args.repeats)
            groups.append({"env": config.env.id, "members": size, "episodes": GROUP_EPISODES,
                           **{name: round(cpu, 3) for name, cpu in group.items()},
                           **{ratio: round(group[name] / group["one_by_one_s"], 2)
                              for name, ratio in (("at_once_s", "ratio"),
                                                  ("at_once_shared_s", "ratio_shared"))
                              if name in group}})
            print(groups[-1], flush=True)
    print(json.dumps({"rows": rows, "groups": groups}))


if __name__ == "__main__":
    main()
