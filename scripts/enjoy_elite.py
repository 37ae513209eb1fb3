"""Watch a saved agent: load it, rebuild its training env, run the recurrent inference loop.

The loop below is what deploying a recurrent agent looks like: the hidden state is carried from
step to step and reset for the envs whose episode just started. Episodes are reported in the
order they finish (with several envs, short ones finish first); `evopop evaluate` gives unbiased
statistics over seeded episodes.

    python scripts/enjoy_elite.py runs/pendulum/elite.safetensors --episodes 5 --record elite.gif
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from gymnasium.vector import VectorEnv

from evopop.agents import Agent
from evopop.agents.checkpoint import load_agent, read_metadata
from evopop.envs import make_vec_env
from evopop.errors import UserError
from evopop.execution.worker import set_one_thread
from evopop.inference import check_spaces, evaluate_agent_file, resolve_env, video_format


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="agent file (e.g. a run's elite.safetensors)")
    parser.add_argument("--env", default=None, help="env id instead of the agent file's env")
    parser.add_argument("--num-envs", type=int, default=1, help="envs stepped together")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", type=Path, default=None,
                        help="also write the seeded episodes as a .gif or .mp4")
    args = parser.parse_args()
    if args.num_envs < 1 or args.episodes < 1:
        parser.error("--num-envs and --episodes must be >= 1")
    return args


def run_episodes(agent: Agent, envs: VectorEnv, episodes: int, seed: int
                 ) -> list[tuple[float, int]]:
    """(return, length) of the first `episodes` episodes to finish, deterministic actions."""
    obs, _ = envs.reset(seed=seed)
    state = agent.initial_state(envs.num_envs)
    starts = np.ones(envs.num_envs, bool)
    returns, lengths = np.zeros(envs.num_envs), np.zeros(envs.num_envs, np.int64)
    finished: list[tuple[float, int]] = []
    while len(finished) < episodes:
        actions, state = agent.act(obs, state, episode_start=starts, deterministic=True)
        obs, reward, terminated, truncated, _ = envs.step(actions)
        returns += reward
        lengths += 1
        starts = terminated | truncated  # SAME_STEP autoreset: obs already starts a new episode
        finished += [(float(returns[i]), int(lengths[i])) for i in np.flatnonzero(starts)]
        returns[starts], lengths[starts] = 0.0, 0
    return finished[:episodes]


def main() -> int:
    args = parse_args()
    set_one_thread()
    try:
        if args.record is not None:
            video_format(args.record)  # a bad suffix fails now, not after the episodes
        agent = load_agent(args.path)
        source = resolve_env(read_metadata(args.path), args.env, str(args.path))
        envs = make_vec_env(source, args.num_envs)
        check_spaces(agent, source.id, envs.single_observation_space, envs.single_action_space)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.path} on {source.id} ({args.num_envs} envs)")
    results = run_episodes(agent, envs, args.episodes, args.seed)
    envs.close()
    for j, (ret, length) in enumerate(results, start=1):
        print(f"episode {j:3d}  return {ret:9.1f}  length {length}")
    print(f"mean return {np.mean([r for r, _ in results]):.1f} over {len(results)} episodes")
    if args.record is not None:
        try:
            report = evaluate_agent_file(args.path, args.env, args.episodes, args.seed,
                                         record=args.record)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
