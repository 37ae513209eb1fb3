"""Devices: names checked up front, `cuda` refused in one line without CUDA, device-free agent
files, bit-identical CPU results; `cuda`-marked tests train and act on a GPU where there is one."""

from pathlib import Path

import numpy as np
import pytest
import torch

from evopop.agents import NetSpec
from evopop.agents.checkpoint import agent_from_bytes, agent_to_bytes, load_agent, weights_sha256
from evopop.agents.device import DeviceError, check_device_name, resolve_device
from evopop.agents.ppo import ppo_update
from evopop.cli import main
from evopop.config import ConfigError, parse_config
from evopop.envs import make_vec_env
from evopop.evolution.loop import Population
from evopop.rollouts.collect import Collector, collect
from evopop.rundir import RunDir
from evopop.seeding import torch_generator
from evopop.training import run_training

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

TINY = {
    "env": {"id": "PendulumNoVel-v1", "num_envs": 2, "kwargs": {"max_episode_steps": 50}},
    "net": {"cell": "lstm", "hidden_size": 8, "head": [8]},
    "ppo": {"learn_step": 32, "batch_size": 32, "update_epochs": 2},
    "max_steps": 128, "eval_episodes": 2, "seed": 5, "backend": "local",
    "evolution": {"population_size": 2, "tournament_size": 1, "evo_steps": 64},
}


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one whose torch sees no GPU, whatever it really has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def trained(make_agent):
    """A Pendulum agent after one update (moved weights, Adam moments, normaliser statistics)
    and the envs it trained on."""
    envs = make_vec_env("PendulumNoVel-v1", 2, seed=0)
    agent = make_agent(envs, spec=NetSpec(cell="lstm", hidden_size=8, head=(8,)),
                       learn_step=32, batch_size=32)
    _learn(agent, envs)
    yield agent, envs
    envs.close()


def _learn(agent, envs) -> None:
    buf = collect(agent, Collector.start(agent, envs, seed=0), 32, torch_generator(0))
    ppo_update(agent, buf, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["cpu", "auto", "cuda", "cuda:0", "cuda:12"])
def test_valid_device_names_pass(name):
    assert check_device_name(name) == name


@pytest.mark.parametrize("name", ["gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "", "mps", 0])
def test_bad_device_names_are_one_line_config_errors(name):
    with pytest.raises(ConfigError, match=r"device: device must be cpu, cuda, cuda:N or auto"):
        parse_config({**TINY, "device": name})


def test_device_defaults_to_cpu_and_auto_resolves_to_cpu_without_a_gpu(no_cuda):
    assert parse_config(TINY).device == "cpu"
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_is_refused_in_one_line_when_torch_sees_no_gpu(no_cuda):
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match="use device cpu or auto") as err:
            resolve_device(name)
        assert "\n" not in str(err.value)


def test_a_gpu_index_beyond_the_visible_ones_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(DeviceError, match=r"torch sees 1 GPU\(s\)"):
        resolve_device("cuda:1")


def test_train_with_cuda_but_no_gpu_fails_in_one_line_before_the_run_dir(tmp_path, capsys,
                                                                          no_cuda):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("env: {id: CartPoleNoVel-v1, num_envs: 2}\nppo: {learn_step: 32, "
                   "batch_size: 32}\nmax_steps: 64\n")
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--quiet", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda'" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not run.exists()
    with pytest.raises(SystemExit) as usage:
        main(["train", str(cfg), "--run-dir", str(run), "--device", "gpu"])
    assert usage.value.code == 2
    assert "device must be cpu, cuda, cuda:N or auto" in capsys.readouterr().err


def test_evaluate_with_cuda_but_no_gpu_fails_in_one_line(tmp_path, capsys, trained, no_cuda):
    from evopop.agents.checkpoint import save_agent

    path = tmp_path / "agent.safetensors"
    save_agent(trained[0], path, extra={"env_id": "PendulumNoVel-v1"})
    assert main(["evaluate", str(path), "--episodes", "1", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda'" in err and err.count("\n") == 1


@pytest.mark.parametrize("device", DEVICES)
def test_an_agent_file_is_the_same_from_the_cpu_or_after_a_trip_to_a_device(trained, device):
    agent = trained[0]
    before = agent_to_bytes(agent)
    assert agent_to_bytes(agent.to(device)) == before  # saved while on the device
    assert agent_to_bytes(agent.to("cpu")) == before
    loaded = agent_from_bytes(before, device=device)
    assert loaded.device.type == device
    assert all(p.device.type == device for p in loaded.net.parameters())
    assert agent_to_bytes(loaded) == before


def test_to_moves_every_parameter_and_moment(trained):
    """Checked on the data-free `meta` device, so that CPU-only machines check it too."""
    agent = trained[0].to("meta")
    assert agent.device == torch.device("meta")
    assert all(p.is_meta for p in agent.net.parameters())
    moments = [v for slots in agent.optimizer.state.values() for k, v in slots.items()
               if k != "step"]  # Adam keeps its step counts on the CPU
    assert moments and all(m.is_meta for m in moments)
    assert agent.initial_state(3).is_meta


def test_a_trip_to_the_cpu_changes_no_later_update(trained):
    agent, envs = trained
    moved = agent_from_bytes(agent_to_bytes(agent)).to("cpu").to("cpu")
    _learn(agent, envs)
    _learn(moved, envs)
    assert agent_to_bytes(moved) == agent_to_bytes(agent)


def test_explicit_cpu_and_auto_on_a_cpu_machine_give_the_default_run(tmp_path, no_cuda):
    hashes = set()
    for name, extra in (("default", {}), ("cpu", {"device": "cpu"}), ("auto", {"device": "auto"})):
        config = parse_config({**TINY, **extra})
        assert {t.device for t in Population(config)._tasks()} == {"cpu"}
        hashes.add(run_training(config, tmp_path / name, progress=False).elite_sha256)
    assert len(hashes) == 1


def _same_observations_actions(agents, steps: int = 40) -> list[np.ndarray]:
    """Deterministic actions of each agent on one observation sequence (the first agent's)."""
    envs = make_vec_env("PendulumNoVel-v1", 2, seed=0)
    obs, _ = envs.reset(seed=7)
    seen = []
    state = agents[0].initial_state(2)
    for _ in range(steps):
        seen.append(obs)
        actions, state = agents[0].act(obs, state)
        obs, *_ = envs.step(actions)
    envs.close()
    out = []
    for agent in agents:
        state, acts = agent.initial_state(2), []
        for o in seen:
            actions, state = agent.act(o, state)
            acts.append(actions)
        out.append(np.stack(acts))
    return out


@pytest.mark.cuda
def test_a_population_trained_on_cuda_acts_alike_when_loaded_on_the_cpu(tmp_path: Path):
    summary = run_training(parse_config({**TINY, "device": "cuda"}), tmp_path / "run",
                           progress=False)
    elite = RunDir(tmp_path / "run").elite
    on_cpu, on_cuda = load_agent(elite), load_agent(elite, device="cuda")
    assert weights_sha256(on_cpu) == weights_sha256(on_cuda) == summary.elite_sha256
    cpu_actions, cuda_actions = _same_observations_actions([on_cpu, on_cuda])
    np.testing.assert_allclose(cuda_actions, cpu_actions, atol=1e-4)


@pytest.mark.cuda
def test_collection_and_update_on_cuda_follow_the_cpu_to_tolerance(trained):
    agent, envs = trained
    data = agent_to_bytes(agent)
    cpu, cuda = agent_from_bytes(data), agent_from_bytes(data, device="cuda")
    bufs = []
    for learner in (cpu, cuda):  # same env seed and the same CPU sampling stream
        bufs.append(collect(learner, Collector.start(learner, envs, seed=1), 32,
                            torch_generator(1)))
    np.testing.assert_allclose(bufs[1].actions, bufs[0].actions, atol=1e-4)
    np.testing.assert_allclose(bufs[1].log_probs, bufs[0].log_probs, atol=1e-3)
    for learner, buf in zip((cpu, cuda), bufs, strict=True):
        assert ppo_update(learner, buf, np.random.default_rng(1)).finite
    for a, b in zip(cpu.net.parameters(), cuda.net.parameters(), strict=True):
        np.testing.assert_allclose(b.detach().cpu().numpy(), a.detach().numpy(), atol=1e-2)
