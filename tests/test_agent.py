"""Live changes to an agent: hyperparameters and architecture, as mutations make them."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.seeding import torch_generator


def _stepped_agent() -> Agent:
    """An agent after one optimizer step, so Adam has moments to keep or lose."""
    agent = Agent(spaces.Box(-1, 1, (3,)), spaces.Discrete(2), NetSpec(hidden_size=8, head=(8,)),
                  PPOParams(lr=1e-3))
    out, value, _ = agent.net(torch.randn(4, 2, 3, generator=torch_generator(0)),
                              agent.initial_state(2))
    (out.sum() + value.sum()).backward()
    agent.optimizer.step()
    return agent


def _moments(agent: Agent) -> list[torch.Tensor]:
    return [s["exp_avg"].clone() for s in agent.optimizer.state_dict()["state"].values()]


def test_lr_change_keeps_adam_moments():
    agent = _stepped_agent()
    before = _moments(agent)
    agent.set_params(agent.params.replace(lr=3e-4, gamma=0.9))
    assert agent.apply_lr() == 3e-4 and agent.optimizer.param_groups[0]["lr"] == 3e-4
    assert all(torch.equal(a, b) for a, b in zip(before, _moments(agent), strict=True))
    assert agent.reward_scaler.gamma == 0.9


def test_activation_change_keeps_adam_moments_and_growth_rebuilds_over_every_parameter():
    agent = _stepped_agent()
    before = _moments(agent)
    agent.set_spec(NetSpec(hidden_size=8, head=(8,), activation="relu"), torch_generator(1))
    assert all(torch.equal(a, b) for a, b in zip(before, _moments(agent), strict=True))
    agent.set_spec(NetSpec(hidden_size=16, head=(8, 8), activation="relu"), torch_generator(1))
    in_optimizer = {id(p) for g in agent.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in agent.net.parameters()}
    assert not agent.optimizer.state_dict()["state"]


def test_stochastic_actions_need_an_explicit_generator():
    agent = _stepped_agent()
    obs = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="Generator"):
        agent.act(obs, agent.initial_state(2), deterministic=False)
    a, _ = agent.act(obs, agent.initial_state(2), deterministic=False, generator=torch_generator(3))
    b, _ = agent.act(obs, agent.initial_state(2), deterministic=False, generator=torch_generator(3))
    np.testing.assert_array_equal(a, b)


def test_apply_lr_is_the_schedule_and_loading_leaves_no_stale_rate(tmp_path):
    from evopop.agents.checkpoint import load_agent, save_agent

    agent = _stepped_agent()
    agent.set_params(agent.params.replace(lr=2e-3, anneal=True))
    assert agent.apply_lr(0.25) == 2e-3 * 0.25
    assert all(g["lr"] == 2e-3 * 0.25 for g in agent.optimizer.param_groups)
    save_agent(agent, tmp_path / "a.safetensors")
    loaded = load_agent(tmp_path / "a.safetensors")
    assert loaded.optimizer.param_groups[0]["lr"] == 2e-3  # from params, not the annealed value
    assert loaded.apply_lr(0.5) == 1e-3


@pytest.mark.parametrize("cell", [torch.nn.LSTM, torch.nn.GRU])
@pytest.mark.parametrize("layers", [1, 2])
def test_a_collection_step_through_the_fused_cell_matches_the_sequence_module(cell, layers):
    """Collection steps one step at a time through torch's cell ops; the update runs whole
    sequences through the module. Both must agree, or the update's log-prob ratio drifts."""
    from evopop.agents.networks import run_rnn

    torch.manual_seed(0)
    rnn = cell(3, 8, layers)
    channels = 2 if cell is torch.nn.LSTM else 1
    xs, state = torch.randn(6, 5, 3), torch.randn(channels, layers, 5, 8)
    whole, final = run_rnn(rnn, xs, state)
    steps = []
    for t in range(6):
        out, state = run_rnn(rnn, xs[t:t + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps), whole, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(state, final, atol=1e-6, rtol=1e-5)
