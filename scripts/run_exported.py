"""Run an exported ONNX policy on its env with only onnxruntime, numpy and gymnasium.

    evopop export runs/cp/elite.safetensors --format onnx --out cp.onnx
    python scripts/run_exported.py cp.onnx --episodes 5        # the env the file records
    python scripts/run_exported.py cp.onnx --env CartPole-v1   # another env with the same spaces

Everything comes from the file: the env to build and the names, shapes and dtypes of the policy's
inputs and outputs (`evopop export` writes them into the model's metadata). The env wrappers
(velocity masks, noise, flicker, the previous action and reward) and evopop's ids
(`CartPoleNoVel-v1`, `evopop/...`) are part of the env, not of the policy, so for them, and only
for them, the script imports `evopop.envs`, which imports neither torch nor onnx. Episode j is
reset with seed + j and the recurrent state starts at zeros, as `evopop evaluate` plays its
deterministic episodes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import onnxruntime as ort

METADATA_KEY = "evopop"  # where `evopop export` puts its JSON in the model's metadata_props
BATCH = "batch"  # the dynamic env axis of input shapes


class ExportedPolicy:
    """One env's policy: observation in, action out, the recurrent state carried inside."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ValueError(f"policy file not found: {path}")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own error types for a corrupt file
            raise ValueError(f"{path} is not an ONNX model ({' '.join(str(error).split())})"
                             ) from None
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise ValueError(f"{path} records no evopop metadata (write it with evopop export)")
        self.meta: dict[str, Any] = json.loads(text)
        self.obs, *self.states = self.meta["inputs"]
        self.outputs = [o["name"] for o in self.meta["outputs"]]
        self.reset()

    def reset(self) -> None:
        """Zero state: what starts an episode."""
        self.state = [np.zeros([1 if d == BATCH else d for d in s["shape"]], np.float32)
                      for s in self.states]

    def __call__(self, obs: Any) -> np.ndarray:
        feed = {self.obs["name"]: np.asarray(obs, dtype=self.obs["dtype"])[None]}
        feed.update((s["name"], value) for s, value in zip(self.states, self.state, strict=True))
        action, *self.state = self.session.run(self.outputs, feed)
        return action[0]


def make_env(section: dict[str, Any]) -> gym.Env:
    """The recorded env; evopop's registration and wrappers only where the env needs them."""
    plain = not section.get("wrappers") and not section.get("packages")
    if plain and section["id"] in gym.registry:
        return gym.make(section["id"], **section.get("kwargs", {}))
    from evopop.envs import EnvSpec
    from evopop.envs import make_env as make_evopop_env

    return make_evopop_env(EnvSpec.model_validate(section))


def _summary(space: gym.Space) -> dict[str, Any]:
    """What must match between the env and the recorded space (bounds may differ)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    return {"type": type(space).__name__, "shape": list(space.shape or ())}


def check_spaces(meta: dict[str, Any], env: gym.Env, env_id: str) -> None:
    """Refuses an env whose spaces are not those the policy was exported for."""
    for kind in ("observation", "action"):
        actual = _summary(getattr(env, f"{kind}_space"))
        expected = {k: meta[f"{kind}_space"].get(k) for k in actual}
        if expected != actual:
            raise ValueError(f"the policy was exported for {kind} space {expected}; "
                             f"env {env_id} has {actual}")


def run_episodes(policy: ExportedPolicy, env: gym.Env, episodes: int, seed: int
                 ) -> tuple[list[float], list[int]]:
    returns, lengths = [], []
    for j in range(episodes):
        obs, _ = env.reset(seed=seed + j)
        policy.reset()
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            steps += 1
            done = bool(terminated or truncated)
        returns.append(total)
        lengths.append(steps)
    return returns, lengths


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="an ONNX policy written by evopop export")
    parser.add_argument("--env", default=None, help="env id instead of the file's env")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="episode j uses seed + j")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.episodes < 1 or args.seed < 0:
        parser.error("--episodes must be >= 1 and --seed >= 0")
    return args


def main() -> int:
    args = parse_args()
    try:
        policy = ExportedPolicy(args.path)
        section = {"id": args.env} if args.env else policy.meta.get("env")
        if not section:
            raise ValueError(f"{args.path} records no env; pass --env ENV_ID")
        env = make_env(section)
        check_spaces(policy.meta, env, section["id"])
    except (ValueError, gym.error.Error) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    returns, lengths = run_episodes(policy, env, args.episodes, args.seed)
    env.close()
    if args.json:
        print(json.dumps({"env_id": section["id"], "seed": args.seed, "returns": returns,
                          "lengths": lengths, "mean": float(np.mean(returns))}))
        return 0
    for j, (ret, length) in enumerate(zip(returns, lengths, strict=True)):
        print(f"episode {j + 1:3d}  seed {args.seed + j}  return {ret:9.1f}  length {length}")
    print(f"mean return {np.mean(returns):.1f} over {len(returns)} episodes on {section['id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
