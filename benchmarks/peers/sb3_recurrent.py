"""Defaults-study peer: sb3-contrib RecurrentPPO with its own defaults, in its own venv.

Usage: benchmarks/.peers/sb3-venv/bin/python benchmarks/peers/sb3_recurrent.py \
           --env evopop/TMaze-v0 [--wrappers '[{"noisy": {"sigma": 0.1}}]'] --steps 20000 --seed 0

What a new sb3 user gets from `RecurrentPPO("MlpLstmPolicy", env_id, seed=seed).learn(steps)`:
one env (wrapped in a Monitor, as sb3 does for an id), every hyperparameter at sb3-contrib's
default (LSTM 256 for actor and critic, net_arch [64, 64] tanh, 128 steps, batch 128, 10 epochs,
lr 3e-4), on the CPU with one torch thread (as every run of the study gets). The env is built by
evopop's `make_env` (benchmarks/setup_peers.sh puts this checkout on the venv's path), so both
systems see the same id, wrappers and kwargs. The trained policy then plays `--episodes`
deterministic episodes, episode j reset with seed `--eval-seed + j` (what `evopop evaluate
--seed` does), carrying its LSTM state.

The last line printed is JSON: status "ok" with the mean, std and returns, or status "crash"
with the exception sb3 raised (sb3 does not support every space: that is a result, recorded as
is), and the wall seconds of training and of the whole run.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sb3_contrib import RecurrentPPO  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

from evopop.envs import EnvSpec, make_env  # noqa: E402

CRASH_EXIT = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="a registered id (evopop's included)")
    parser.add_argument("--wrappers", default="[]", help="evopop env.wrappers, as JSON")
    parser.add_argument("--kwargs", default="{}", help="gym.make keywords, as JSON")
    parser.add_argument("--steps", type=int, required=True, help="env steps to train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=20, help="fresh evaluation episodes")
    parser.add_argument("--eval-seed", type=int, default=10_000, help="episode j: seed + j")
    return parser.parse_args()


def play(model: RecurrentPPO, env: gym.Env, episodes: int, seed: int) -> list[float]:
    """Deterministic episode returns; the LSTM state is carried and reset at episode starts."""
    returns = []
    for j in range(episodes):
        obs, _ = env.reset(seed=seed + j)
        state, start, total, done = None, np.ones((1,), bool), 0.0, False
        while not done:
            action, state = model.predict(obs, state=state, episode_start=start,
                                          deterministic=True)
            obs, reward, term, trunc, _ = env.step(action)
            total += float(reward)
            start = np.zeros((1,), bool)
            done = bool(term or trunc)
        returns.append(total)
    return returns


def run(spec: EnvSpec, args: argparse.Namespace) -> dict[str, Any]:
    """Train with sb3-contrib's defaults, then play the fresh episodes."""
    model = RecurrentPPO("MlpLstmPolicy", DummyVecEnv([lambda: Monitor(make_env(spec))]),
                         seed=args.seed, device="cpu", verbose=0)
    began = time.perf_counter()
    model.learn(total_timesteps=args.steps)
    train_wall = time.perf_counter() - began
    env = make_env(spec)
    try:
        returns = play(model, env, args.episodes, args.eval_seed)
    finally:
        env.close()
    return {"status": "ok", "mean": float(np.mean(returns)), "std": float(np.std(returns)),
            "returns": returns, "train_wall_s": round(train_wall, 1),
            "steps_per_s": round(model.num_timesteps / train_wall, 1)}


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    spec = EnvSpec(id=args.env, num_envs=1, wrappers=json.loads(args.wrappers),
                   kwargs=json.loads(args.kwargs))
    try:
        result = run(spec, args)
    except Exception as error:  # an unsupported space is a result of the study, not a bug here
        first_line = str(error).splitlines()[0] if str(error) else ""
        result = {"status": "crash", "error": f"{type(error).__name__}: {first_line}"}
    print(json.dumps({
        "system": "sb3-contrib RecurrentPPO", "version": importlib.metadata.version("sb3-contrib"),
        "env": args.env, "wrappers": spec.wrappers, "steps": args.steps, "seed": args.seed,
        "episodes": args.episodes, "eval_seed": args.eval_seed, **result,
        "wall_s": round(time.perf_counter() - START, 1),
    }))
    return CRASH_EXIT if result["status"] == "crash" else 0


if __name__ == "__main__":
    sys.exit(main())
