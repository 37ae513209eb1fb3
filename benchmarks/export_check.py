"""Export verification figures: exported files against evopop's own inference path.

For each case (LSTM / GRU / feed-forward x Box / Discrete / MultiDiscrete actions, plus any
`--agent` files), the agent plays `--steps` env steps through `evopop.inference.policy_step`
(a fresh zero state at each episode start, hidden state carried in between); the TorchScript
and ONNX files replay the same observations, and the largest absolute action difference is
reported (TorchScript `sample` against evopop's stochastic actions with the same seed, too).
Then file sizes, export times and the latency of one step for one env with the state carried:
evopop's `Agent.act` (encoding, normaliser and action mapping in numpy around eager torch),
the TorchScript module and an onnxruntime session, all on one thread. Synthetic agents get
noisy weights and normaliser statistics (some observations clipped), as in tests/test_export.py.
The last line is JSON.

    python benchmarks/export_check.py [--agent runs/cp/elite.safetensors] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from evopop.agents import Agent, NetSpec
from evopop.agents.checkpoint import load_agent, read_metadata
from evopop.envs import EnvSpec, make_env
from evopop.execution.worker import set_one_thread
from evopop.export import export_agent, read_policy_metadata
from evopop.inference import policy_step, resolve_env
from evopop.seeding import torch_generator

ENVS = {
    "Box": EnvSpec(id="PendulumNoVel-v1"),
    "Discrete": EnvSpec(id="CartPoleNoVel-v1"),
    "MultiDiscrete": EnvSpec(id="evopop/DelayedRecallHard-v0"),
}
CELLS = ("lstm", "gru", "none")


def synthetic_agent(cell: str, env: EnvSpec, hidden: int, seed: int = 0) -> Agent:
    made = make_env(env)
    agent = Agent(made.observation_space, made.action_space,
                  NetSpec(cell=cell, hidden_size=hidden, head=(hidden,)), seed=seed)
    gen = torch_generator(seed + 100)
    # weight noise of their own scale (1 / sqrt(fan-in); 4x on the tiny policy layer), and Box
    # means moved up by 1.5 so that some of Pendulum's actions (bound 2) clip
    with torch.no_grad():
        for name, param in agent.net.named_parameters():
            if param.dim() > 1:
                scale = (4.0 if name.startswith("pi.") else 1.0) / math.sqrt(param.shape[-1])
                param.add_(scale * torch.randn(param.shape, generator=gen))
        if agent.net.log_std is not None:
            agent.net.pi.bias.add_(1.5)
    norm = agent.obs_norm
    if norm is not None and len(norm.columns):
        rng = np.random.default_rng(seed)
        norm.rms.mean = rng.normal(0.0, 0.3, len(norm.columns))
        norm.rms.var = rng.uniform(0.5, 2.0, len(norm.columns))
        norm.rms.var[0] = 1e-3
    return agent


def play(agent: Agent, env: EnvSpec, steps: int, stochastic: bool, seed: int = 0
         ) -> tuple[list[np.ndarray], list[bool], list[np.ndarray]]:
    """(observations, episode starts, actions) of `steps` steps of evopop's inference path."""
    made = make_env(env)
    generator = torch_generator(seed) if stochastic else None
    observations, starts, actions = [], [], []
    obs, _ = made.reset(seed=seed)
    step, start, episode = policy_step(agent, not stochastic, generator), True, 0
    for _ in range(steps):
        action = step(obs)
        observations.append(np.asarray(obs))
        starts.append(start)
        actions.append(np.asarray(action))
        obs, _, terminated, truncated, _ = made.step(action)
        start = bool(terminated or truncated)
        if start:
            episode += 1
            obs, _ = made.reset(seed=seed + episode)
            step = policy_step(agent, not stochastic, generator)
    made.close()
    return observations, starts, actions


def _zeros(path: Path) -> tuple[Any, list[np.ndarray]]:
    obs, *states = read_policy_metadata(path).inputs
    return obs, [np.zeros([1 if d == "batch" else d for d in s.shape], np.float32)
                 for s in states]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_stepper(path: Path) -> Callable[[np.ndarray, bool], np.ndarray]:
    session = _session(path)
    obs_info, zeros = _zeros(path)
    names = [info.name for info in read_policy_metadata(path).inputs]
    state = list(zeros)

    def step(obs: np.ndarray, start: bool) -> np.ndarray:
        nonlocal state
        feed = dict(zip(names, [obs.astype(obs_info.dtype)[None], *(zeros if start else state)],
                        strict=True))
        action, *state = session.run(None, feed)
        return action[0]

    return step


def torchscript_stepper(path: Path, stochastic: bool = False, seed: int = 0
                        ) -> Callable[[np.ndarray, bool], np.ndarray]:
    policy = torch.jit.load(str(path))
    obs_info, zeros = _zeros(path)
    generator = torch_generator(seed)
    state = [torch.from_numpy(z) for z in zeros]

    @torch.inference_mode()
    def step(obs: np.ndarray, start: bool) -> np.ndarray:
        nonlocal state
        if start:
            state = [torch.from_numpy(z) for z in zeros]
        x = torch.from_numpy(obs.astype(obs_info.dtype)[None])
        out = policy.sample(x, *state, generator) if stochastic else policy(x, *state)
        action, *state = out if isinstance(out, tuple) else (out,)
        return action[0].numpy()

    return step


def max_diff(step: Callable[[np.ndarray, bool], np.ndarray],
             trajectory: tuple[list[np.ndarray], list[bool], list[np.ndarray]]) -> float:
    observations, starts, actions = trajectory
    return max(float(np.max(np.abs(step(o, s).astype(np.float64) - a)))
               for o, s, a in zip(observations, starts, actions, strict=True))


def latency_us(step: Callable[[], Any], repeats: int, rounds: int = 5) -> tuple[float, float]:
    """(CPU, wall) time of one call in microseconds, medians over rounds of `repeats` calls.

    Every runtime computes in the calling thread (one torch thread, one onnxruntime thread), so
    the thread's CPU time is the cost of a step even while other jobs load the machine; wall
    time adds the time the thread waited for a core."""
    for _ in range(50):  # TorchScript's profiling executor optimises over the first calls
        step()
    cpu, wall = [], []
    for _ in range(rounds):
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        for _ in range(repeats):
            step()
        cpu.append((time.thread_time() - cpu0) / repeats * 1e6)
        wall.append((time.perf_counter() - wall0) / repeats * 1e6)
    return round(statistics.median(cpu), 1), round(statistics.median(wall), 1)


def check(name: str, agent: Agent, env: EnvSpec, folder: Path, steps: int, repeats: int
          ) -> dict[str, Any]:
    files, export_s = {}, {}
    for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
        files[fmt] = folder / f"{name}{suffix}"
        start = time.perf_counter()
        export_agent(agent, fmt, files[fmt], env=env)
        export_s[fmt] = time.perf_counter() - start
    deterministic = play(agent, env, steps, stochastic=False)
    stochastic = play(agent, env, steps, stochastic=True, seed=7)
    obs = deterministic[0][0]
    evopop_step = policy_step(agent)
    ts_step, onnx_step = torchscript_stepper(files["torchscript"]), onnx_stepper(files["onnx"])
    latency = {"evopop": latency_us(lambda: evopop_step(obs), repeats),
                "torchscript": latency_us(lambda: ts_step(obs, False), repeats),
                "onnxruntime": latency_us(lambda: onnx_step(obs, False), repeats)}
    return {
        "case": name, "env": env.id, "steps": steps,
        "diff_onnx": max_diff(onnx_stepper(files["onnx"]), deterministic),
        "diff_torchscript": max_diff(torchscript_stepper(files["torchscript"]), deterministic),
        "diff_torchscript_sample": max_diff(
            torchscript_stepper(files["torchscript"], stochastic=True, seed=7), stochastic),
        "bytes_onnx": files["onnx"].stat().st_size,
        "bytes_torchscript": files["torchscript"].stat().st_size,
        "export_s_onnx": round(export_s["onnx"], 2),
        "export_s_torchscript": round(export_s["torchscript"], 2),
        **{f"cpu_us_{k}": cpu for k, (cpu, _) in latency.items()},
        **{f"wall_us_{k}": wall for k, (_, wall) in latency.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", type=Path, action="append", default=[],
                        help="also check this agent file (on the env it records)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=64, help="synthetic agents' widths")
    parser.add_argument("--repeats", type=int, default=2000, help="calls per latency round")
    args = parser.parse_args()
    set_one_thread()
    cases = [(f"{cell}-{kind}", synthetic_agent(cell, env, args.hidden), env)
             for cell in CELLS for kind, env in ENVS.items()]
    cases += [(f"{path.parent.name}-{path.stem}", load_agent(path),
               resolve_env(read_metadata(path), None, str(path))) for path in args.agent]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, agent, env in cases:
            rows.append(check(name, agent, env, Path(tmp), args.steps, args.repeats))
            print(" | ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    print(json.dumps({"rows": rows, "torch": torch.__version__, "onnxruntime": ort.__version__}))


if __name__ == "__main__":
    main()
