"""Exported policies (TorchScript, ONNX) act as evopop's own inference path does.

Every case replays 200 env steps played by `evopop.inference.policy_step` (the path `evopop
evaluate` runs; a fresh zero state at each episode start, hidden state carried in between)
through the exported file and compares the actions: to 1e-5 for Box, exactly for categorical
actions. Agents get noisy weights and non-trivial normaliser statistics (some observations
are clipped), so that a wrong normaliser, state wiring or action mapping shows. The ONNX grid
is a Latin square of cells x action spaces here; the whole 3 x 3 grid is marked slow.
"""

import json
import math
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from gymnasium import spaces

from evopop.agents import Agent, NetSpec
from evopop.agents.checkpoint import save_agent
from evopop.cli import main
from evopop.envs import EnvSpec, make_env
from evopop.export import ExportError, export_agent, read_policy_metadata
from evopop.inference import evaluate_agent_file, policy_step
from evopop.seeding import torch_generator

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_exported.py"
STEPS = 200
TOL = 1e-5

BOX = EnvSpec(id="PendulumNoVel-v1")
# a plain Gymnasium id with evopop's wrappers, one of them seeded: the env is rebuilt from them
DISCRETE = EnvSpec(id="CartPole-v1", wrappers=["mask_velocity", {"noisy": {"sigma": 0.05}}])
MULTI = EnvSpec(id="evopop/DelayedRecallHard-v0")  # MultiDiscrete observations and actions
CELLS = ("lstm", "gru", "none")
ENVS = {"box": BOX, "discrete": DISCRETE, "multi": MULTI}
GRID = [(cell, env) for cell in CELLS for env in ENVS]
LATIN = [("lstm", "box"), ("gru", "discrete"), ("none", "multi")]


def make_agent(cell: str, env_key: str, seed: int = 0) -> Agent:
    """An agent whose weights are far from init (noise of their own scale, 1 / sqrt(fan-in))
    and whose normaliser has real statistics.

    LSTM: two layers, separate critic encoder (the actor's state is half the agent's); GRU:
    shared encoder, and gSDE on Box actions; feed-forward: two head layers."""
    env = make_env(ENVS[env_key])
    spec = NetSpec(cell=cell, hidden_size=16, head=(16, 16) if cell == "none" else (16,),
                   num_layers=2 if cell == "lstm" else 1, shared_encoder=cell == "gru",
                   sde=cell == "gru" and env_key == "box")
    agent = Agent(env.observation_space, env.action_space, spec, seed=seed)
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
    if agent.obs_norm is not None and len(agent.obs_norm.columns):
        rng = np.random.default_rng(seed)
        width = len(agent.obs_norm.columns)
        agent.obs_norm.rms.mean = rng.normal(0.0, 0.3, width)
        agent.obs_norm.rms.var = rng.uniform(0.5, 2.0, width)
        agent.obs_norm.rms.var[0] = 1e-3  # |x - mean| / 0.03 passes the clip at 10 often
    return agent


@dataclass
class Trajectory:
    obs: list[np.ndarray]
    starts: list[bool]
    actions: list[np.ndarray]


def reference(agent: Agent, env: EnvSpec, stochastic: bool = False, seed: int = 0) -> Trajectory:
    """STEPS steps of evopop's inference path; episode k is reset with seed + k."""
    made = make_env(env)
    generator = torch_generator(seed) if stochastic else None
    traj, episode, start = Trajectory([], [], []), 0, True
    obs, _ = made.reset(seed=seed)
    step = policy_step(agent, not stochastic, generator)
    for _ in range(STEPS):
        action = step(obs)
        traj.obs.append(np.asarray(obs))
        traj.starts.append(start)
        traj.actions.append(np.asarray(action))
        obs, _, terminated, truncated, _ = made.step(action)
        start = bool(terminated or truncated)
        if start:
            episode += 1
            obs, _ = made.reset(seed=seed + episode)
            step = policy_step(agent, not stochastic, generator)
    made.close()
    return traj


def replay_onnx(path: Path, traj: Trajectory, carry: bool = True) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    obs_info, *state_info = read_policy_metadata(path).inputs
    zeros = [np.zeros([1 if d == "batch" else d for d in s.shape], np.float32)
             for s in state_info]
    actions, state = [], zeros
    for obs, start in zip(traj.obs, traj.starts, strict=True):
        feed = {obs_info.name: obs.astype(obs_info.dtype)[None],
                **{s.name: (zeros if start or not carry else state)[i]
                   for i, s in enumerate(state_info)}}
        action, *state = session.run(None, feed)
        actions.append(action[0])
    return actions


def replay_torchscript(path: Path, traj: Trajectory, stochastic: bool = False,
                       seed: int = 0) -> list[np.ndarray]:
    policy = torch.jit.load(str(path))
    obs_info, *state_info = read_policy_metadata(path).inputs
    generator = torch_generator(seed)
    actions, state = [], []
    for obs, start in zip(traj.obs, traj.starts, strict=True):
        if start:
            state = [torch.zeros([1 if d == "batch" else d for d in s.shape]) for s in state_info]
        x = torch.from_numpy(obs.astype(obs_info.dtype)[None])
        out = policy.sample(x, *state, generator) if stochastic else policy(x, *state)
        action, *state = out if isinstance(out, tuple) else (out,)
        actions.append(action[0].numpy())
    return actions


def max_difference(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    assert len(ours) == len(theirs) == STEPS
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, (a, b)
    return max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in
               zip(ours, theirs, strict=True))


def check_same_actions(ours: list[np.ndarray], traj: Trajectory, env_key: str) -> None:
    """Ours are evopop's actions; the policy is not constant, and on Box some actions clip."""
    assert len({a.tobytes() for a in traj.actions}) > 1
    if env_key == "box":
        assert max_difference(ours, traj.actions) <= TOL
        assert any(np.abs(a).max() == 2.0 for a in traj.actions)  # Pendulum's bound
    else:  # categorical: the very same actions
        assert max_difference(ours, traj.actions) == 0.0


@pytest.fixture(scope="module")
def torchscript_files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    folder = tmp_path_factory.mktemp("torchscript")
    files = {}
    for cell, env_key in GRID:
        files[cell, env_key] = folder / f"{cell}-{env_key}.pt"
        export_agent(make_agent(cell, env_key), "torchscript", files[cell, env_key],
                     env=ENVS[env_key])
    return files


@pytest.fixture(scope="module")
def agent_files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """The Latin-square agents as agent files that record their env, as runs write them."""
    folder = tmp_path_factory.mktemp("agents")
    files = {}
    for cell, env_key in LATIN:
        files[cell, env_key] = folder / f"{cell}-{env_key}.safetensors"
        save_agent(make_agent(cell, env_key), files[cell, env_key],
                   extra={"env": ENVS[env_key].model_dump(mode="json")})
    return files


@pytest.fixture(scope="module")
def onnx_files(agent_files: dict[tuple[str, str], Path]) -> dict[tuple[str, str], Path]:
    """The Latin-square agents exported through the command line."""
    files = {}
    for case, agent_file in agent_files.items():
        files[case] = agent_file.with_suffix(".onnx")
        assert main(["export", str(agent_file), "--format", "onnx"]) == 0
    return files


@pytest.mark.parametrize(("cell", "env_key"), GRID)
def test_torchscript_acts_as_evopop(torchscript_files, cell: str, env_key: str) -> None:
    traj = reference(make_agent(cell, env_key), ENVS[env_key])
    check_same_actions(replay_torchscript(torchscript_files[cell, env_key], traj), traj, env_key)


@pytest.mark.parametrize(("cell", "env_key"), GRID)
def test_torchscript_sample_draws_what_evopop_draws(torchscript_files, cell: str,
                                                    env_key: str) -> None:
    """A generator seeded as `evopop evaluate --stochastic` seeds its own gives its actions."""
    path = torchscript_files[cell, env_key]
    traj = reference(make_agent(cell, env_key), ENVS[env_key], stochastic=True, seed=5)
    check_same_actions(replay_torchscript(path, traj, stochastic=True, seed=5), traj, env_key)
    assert max_difference(replay_torchscript(path, traj), traj.actions) > 0  # it did sample


@pytest.mark.parametrize(("cell", "env_key"), LATIN)
def test_onnx_acts_as_evopop(onnx_files, cell: str, env_key: str) -> None:
    traj = reference(make_agent(cell, env_key), ENVS[env_key])
    check_same_actions(replay_onnx(onnx_files[cell, env_key], traj), traj, env_key)


@pytest.mark.slow
@pytest.mark.parametrize(("cell", "env_key"), [c for c in GRID if c not in LATIN])
def test_onnx_acts_as_evopop_on_the_whole_grid(tmp_path, cell: str, env_key: str) -> None:
    agent = make_agent(cell, env_key)
    export_agent(agent, "onnx", tmp_path / "policy.onnx", env=ENVS[env_key])
    traj = reference(agent, ENVS[env_key])
    check_same_actions(replay_onnx(tmp_path / "policy.onnx", traj), traj, env_key)


def test_the_carried_state_decides_actions(onnx_files) -> None:
    """Replaying without carrying the state changes the actions: the comparisons above would
    catch a policy whose state input were ignored."""
    traj = reference(make_agent("lstm", "box"), BOX)
    assert max_difference(replay_onnx(onnx_files["lstm", "box"], traj, carry=False),
                          traj.actions) > 1e-2


def test_onnx_takes_any_number_of_envs_and_returns_the_actor_state(onnx_files) -> None:
    agent = make_agent("lstm", "box")
    session = ort.InferenceSession(str(onnx_files["lstm", "box"]))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(5, 3)).astype(np.float32)
    h, c = rng.normal(size=(2, 2, 5, 16)).astype(np.float32)
    action, h_out, c_out = session.run(None, {"obs": obs, "h": h, "c": c})
    # the agent's state is [channels, layers, n, hidden]: actor (h, c), then critic (h, c)
    state = torch.from_numpy(np.stack([h, c, h, c]))
    expected, new_state = agent.act(obs, state)
    assert action.shape == (5, 1) and np.abs(action - expected).max() <= TOL
    assert np.abs(h_out - new_state[0].numpy()).max() <= TOL
    assert np.abs(c_out - new_state[1].numpy()).max() <= TOL


def test_metadata_documents_the_graph_and_the_env(onnx_files, torchscript_files) -> None:
    onnx_path = onnx_files["gru", "discrete"]
    meta = read_policy_metadata(onnx_path)
    assert meta.export_format.value == "onnx" and meta.opset == 18
    assert meta.env == {"id": "CartPole-v1", "kwargs": {}, "packages": [],
                        "wrappers": ["mask_velocity", {"noisy": {"sigma": 0.05}}]}
    assert meta.observation_space["type"] == "Box" and meta.action_space == {
        "type": "Discrete", "n": 2, "start": 0}
    session = ort.InferenceSession(str(onnx_path))
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("obs", ["batch", 4]), ("h", [1, "batch", 16])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        ("action", ["batch"]), ("h_out", [1, "batch", 16])]
    assert [(i.name, i.shape) for i in meta.inputs] == [
        ("obs", ["batch", 4]), ("h", [1, "batch", 16])]
    assert [i.dtype for i in meta.inputs + meta.outputs] == ["float32", "float32", "int64",
                                                             "float32"]
    assert session.get_inputs()[0].type == "tensor(float)"
    assert session.get_outputs()[0].type == "tensor(int64)"
    lstm = read_policy_metadata(torchscript_files["lstm", "multi"])
    assert lstm.export_format.value == "torchscript" and lstm.methods == ["forward", "sample"]
    assert [(i.name, i.shape, i.dtype) for i in lstm.inputs] == [
        ("obs", ["batch", 5], "int64"), ("h", [2, "batch", 16], "float32"),
        ("c", [2, "batch", 16], "float32")]
    assert [o.name for o in lstm.outputs] == ["action", "h_out", "c_out"]
    assert read_policy_metadata(torchscript_files["none", "box"]).inputs[1:] == []


def run_exported(*args: str) -> tuple[dict, list[str]]:
    """run_exported.py in a fresh interpreter: its JSON and the heavy modules it imported."""
    code = (
        "import json, runpy, sys\n"
        f"sys.argv = ['run_exported.py', *{list(args)!r}, '--json']\n"
        "try:\n"
        f"    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'onnx', 'onnxscript', 'evopop', 'pydantic', 'safetensors'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report, modules = proc.stdout.strip().splitlines()[-2:]
    return json.loads(report), json.loads(modules)


def test_run_exported_plays_evaluate_episodes_without_torch(agent_files, onnx_files) -> None:
    agent_file, onnx_file = agent_files["gru", "discrete"], onnx_files["gru", "discrete"]
    report, modules = run_exported(str(onnx_file), "--episodes", "3", "--seed", "4")
    expected = evaluate_agent_file(agent_file, episodes=3, seed=4)
    assert report["env_id"] == "CartPole-v1" and report["returns"] == list(expected.returns)
    assert report["lengths"] == list(expected.lengths)
    # the wrappers come from evopop.envs, which brings pydantic but neither torch nor onnx
    assert "torch" not in modules and "onnx" not in modules and "evopop.envs" in modules
    assert "evopop.agents" not in modules
    plain, modules = run_exported(str(onnx_file), "--episodes", "2", "--env", "CartPole-v1")
    assert plain["env_id"] == "CartPole-v1" and len(plain["returns"]) == 2
    assert modules == []  # a plain Gymnasium id: onnxruntime, numpy and gymnasium only


def test_run_exported_builds_evopop_ids(onnx_files) -> None:
    report, modules = run_exported(str(onnx_files["none", "multi"]), "--episodes", "2")
    assert report["env_id"] == "evopop/DelayedRecallHard-v0" and len(report["lengths"]) == 2
    assert "torch" not in modules


def run_script_here(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    import runpy

    monkeypatch.setattr(sys, "argv", ["run_exported.py", *args])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    return stop.value.code, capsys.readouterr().err


def test_run_exported_refuses_other_files_and_envs(onnx_files, tmp_path, monkeypatch,
                                                   capsys) -> None:
    code, err = run_script_here(monkeypatch, capsys, str(onnx_files["gru", "discrete"]),
                                "--env", "Pendulum-v1")
    assert code == 2 and err.count("\n") == 1 and "env Pendulum-v1 has" in err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    code, err = run_script_here(monkeypatch, capsys, str(junk))
    assert code == 2 and err.count("\n") == 1 and "is not an ONNX model" in err
    code, err = run_script_here(monkeypatch, capsys, str(tmp_path / "missing.onnx"))
    assert code == 2 and "policy file not found" in err


def test_cli_writes_torchscript_next_to_the_agent(agent_files, capsys) -> None:
    agent_file = agent_files["none", "multi"]
    assert main(["export", str(agent_file), "--format", "torchscript"]) == 0
    report = json.loads(capsys.readouterr().out)
    out = agent_file.with_suffix(".pt")
    assert report["path"] == str(out) and report["bytes"] == out.stat().st_size
    assert report["methods"] == ["forward", "sample"]
    assert read_policy_metadata(out).env["id"] == "evopop/DelayedRecallHard-v0"


@pytest.mark.parametrize(("content", "message"), [
    (None, "agent file not found"),
    (b"\x00" * 64, "is not a valid evopop file"),
    (pickle.dumps({"net": [1, 2]}), "looks like a pickle"),
])
def test_cli_refuses_bad_agent_files_in_one_line(tmp_path, capsys, content, message) -> None:
    path = tmp_path / "agent.safetensors"
    if content is not None:
        path.write_bytes(content)
    assert main(["export", str(path), "--format", "onnx", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "p").exists()


def test_cli_refuses_unknown_formats_in_one_line(agent_files) -> None:
    proc = subprocess.run([sys.executable, "-m", "evopop.cli", "export",
                           str(agent_files["none", "multi"]), "--format", "tflite"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "invalid choice: 'tflite'" in proc.stderr


def test_export_refuses_what_it_cannot_write(tmp_path, monkeypatch) -> None:
    agent = make_agent("none", "multi")
    with pytest.raises(ExportError, match="unsupported export format 'tflite': use torchscript "
                                          "or onnx"):
        export_agent(agent, "tflite", tmp_path / "p")
    observing = spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Discrete(3)})
    out = tmp_path / "kept.pt"
    out.write_bytes(b"an older policy")
    with pytest.raises(ExportError, match="cannot export an agent observing Dict"):
        export_agent(Agent(observing, spaces.Discrete(2)), "torchscript", out)
    assert out.read_bytes() == b"an older policy"  # nothing written over it
    with pytest.raises(ExportError, match=r"kept\.pt is not an evopop policy file"):
        read_policy_metadata(out)
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if onnx were not installed
    with pytest.raises(ExportError, match=r"needs the onnx package: pip install 'evopop\[export"):
        export_agent(agent, "onnx", tmp_path / "p.onnx")


def test_torchscript_export_imports_no_onnx(tmp_path) -> None:
    code = (
        "import sys\n"
        "from gymnasium import spaces\n"
        "from evopop.agents import Agent\n"
        "from evopop.export import export_agent\n"
        "agent = Agent(spaces.Box(-1, 1, (3,)), spaces.Discrete(2))\n"
        f"export_agent(agent, 'torchscript', {str(tmp_path / 'p.pt')!r})\n"
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'onnxscript') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.strip() == "[]"


@pytest.mark.cuda
def test_an_agent_on_a_gpu_exports_the_same_cpu_policy(tmp_path) -> None:
    agent = make_agent("lstm", "box")
    export_agent(agent, "torchscript", tmp_path / "cpu.pt")
    export_agent(agent.to("cuda"), "torchscript", tmp_path / "gpu.pt")
    assert read_policy_metadata(tmp_path / "cpu.pt") == read_policy_metadata(tmp_path / "gpu.pt")
    traj = reference(agent.to("cpu"), BOX)
    assert max_difference(replay_torchscript(tmp_path / "gpu.pt", traj), traj.actions) == 0.0
