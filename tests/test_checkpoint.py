"""Agent files: identical behaviour after a round trip, no unpickling, atomic writes."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from evopop.agents import NetSpec
from evopop.agents.checkpoint import (
    AgentFileError,
    agent_from_bytes,
    agent_to_bytes,
    load_agent,
    read_metadata,
    save_agent,
    save_agent_bytes,
    unpack_metadata,
    weights_sha256,
)
from evopop.agents.ppo import ppo_update
from evopop.envs import make_vec_env
from evopop.rollouts.collect import Collector, collect
from evopop.seeding import torch_generator


@pytest.fixture
def trained(make_agent):
    """A Pendulum agent after one update: moved weights, Adam moments, normaliser statistics."""
    envs = make_vec_env("PendulumNoVel-v1", 2, seed=0)
    agent = make_agent(envs, spec=NetSpec(cell="gru", hidden_size=8, head=(8,)), learn_step=32,
                       batch_size=32)
    buf = collect(agent, Collector.start(agent, envs, seed=0), 32, torch_generator(0))
    ppo_update(agent, buf, np.random.default_rng(0))
    return agent, envs


def _rollout_actions(agent, envs, deterministic):
    obs, _ = envs.reset(seed=5)
    state, gen, out = agent.initial_state(envs.num_envs), torch_generator(9), []
    for _ in range(30):
        actions, state = agent.act(obs, state, None, deterministic, gen)
        obs, *_ = envs.step(actions)
        out.append(actions)
    return np.stack(out)


@pytest.mark.parametrize("deterministic", [True, False])
def test_round_trip_gives_identical_actions(trained, tmp_path, deterministic):
    agent, envs = trained
    save_agent(agent, tmp_path / "a.safetensors", extra={"env_id": "PendulumNoVel-v1"})
    loaded = load_agent(tmp_path / "a.safetensors")
    np.testing.assert_array_equal(_rollout_actions(agent, envs, deterministic),
                                  _rollout_actions(loaded, envs, deterministic))
    assert loaded.spec == agent.spec and loaded.params == agent.params
    np.testing.assert_array_equal(loaded.obs_norm.rms.mean, agent.obs_norm.rms.mean)
    assert read_metadata(tmp_path / "a.safetensors")["extra"]["env_id"] == "PendulumNoVel-v1"


def test_round_trip_keeps_adam_moments(trained, tmp_path):
    agent, _ = trained
    save_agent(agent, tmp_path / "a.safetensors")
    loaded = load_agent(tmp_path / "a.safetensors")
    before, after = agent.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert before["state"].keys() == after["state"].keys() and before["state"]
    for idx, slots in before["state"].items():
        for slot, value in slots.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(after["state"][idx][slot]))
    assert after["param_groups"][0]["lr"] == agent.params.lr


class _Payload:
    """Unpickling this writes a file: the proof that a payload ran."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


@pytest.mark.parametrize("writer", ["pickle-v0", "pickle-v4", "torch.save"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, writer):
    sentinel, path = tmp_path / "pwned", tmp_path / "evil.safetensors"
    payload = {"net.pi.weight": _Payload(sentinel)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=0 if writer == "pickle-v0" else 4))
    with pytest.raises(AgentFileError):
        load_agent(path)
    assert not sentinel.exists()


def test_missing_truncated_and_foreign_files_are_clear_errors(trained, tmp_path):
    agent, _ = trained
    with pytest.raises(AgentFileError, match="not found"):
        load_agent(tmp_path / "nope.safetensors")
    path = tmp_path / "a.safetensors"
    save_agent(agent, path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(AgentFileError):
        load_agent(path)
    (tmp_path / "junk").write_bytes(os.urandom(64))
    with pytest.raises(AgentFileError):
        load_agent(tmp_path / "junk")


def test_a_crash_during_save_leaves_the_old_file_intact(trained, tmp_path, monkeypatch):
    agent, _ = trained
    path = tmp_path / "a.safetensors"
    save_agent(agent, path)
    original = path.read_bytes()
    for p in agent.net.parameters():
        p.data.add_(1.0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_agent(agent, path)
    assert path.read_bytes() == original
    assert list(tmp_path.iterdir()) == [path]


def test_save_agent_bytes_writes_save_agent_s_file(trained, tmp_path):
    """The loop writes the elite from its bytes: the same file as from the agent."""
    agent, _ = trained
    extra = {"member_id": 3, "fitness": -1.5}
    save_agent(agent, tmp_path / "a.safetensors", extra=extra)
    save_agent_bytes(agent_to_bytes(agent), tmp_path / "b.safetensors", extra=extra)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert unpack_metadata(agent_to_bytes(agent, extra=extra))["extra"] == extra


def test_a_loaded_agent_is_the_saved_one_without_init_draws(trained, monkeypatch):
    """Loading skips the init draws (the file's weights replace them): the result is the same
    agent, and its bytes are the bytes it was loaded from."""
    from evopop.agents.networks import ActorCritic

    agent, _ = trained
    data = agent_to_bytes(agent)

    def drawn(*_):
        raise AssertionError("loading drew initial weights")

    monkeypatch.setattr(ActorCritic, "reset_parameters", drawn)
    loaded = agent_from_bytes(data)
    assert agent_to_bytes(loaded) == data
    assert weights_sha256(loaded) == weights_sha256(agent)
