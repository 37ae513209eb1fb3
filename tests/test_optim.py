"""`FusedAdam` and `clip_grad_norm` against torch's own, to the bit: agent files and
checkpoints written before them load and continue exactly."""

import subprocess
import sys

import torch

from evopop.agents.optim import FusedAdam, clip_grad_norm


def _params(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, requires_grad=True) for shape in ((4, 3), (3,), (5,))]


def _grads(params: list[torch.Tensor], step: int) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def test_fused_adam_matches_torchs_fused_adam_bit_for_bit_through_an_lr_change():
    ours, theirs = _params(0), _params(0)
    mine = FusedAdam(ours, lr=1e-2, eps=1e-5)
    ref = torch.optim.Adam(theirs, lr=1e-2, eps=1e-5, fused=True)
    for step in range(6):
        if step == 3:
            mine.param_groups[0]["lr"] = ref.param_groups[0]["lr"] = 3e-3
        for opt, params in ((mine, ours), (ref, theirs)):
            _grads(params, step)
            opt.step()
            opt.zero_grad()
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    mine_state, ref_state = mine.state_dict(), ref.state_dict()
    assert mine_state["param_groups"] == ref_state["param_groups"]
    for idx, slots in ref_state["state"].items():
        assert mine_state["state"][idx].keys() == slots.keys()
        for key, value in slots.items():
            assert torch.equal(mine_state["state"][idx][key], value)
            assert mine_state["state"][idx][key].dtype == value.dtype


def test_torchs_adam_state_loads_into_fused_adam_and_continues_identically():
    """A file written with torch's Adam (every file before FusedAdam) resumes to the bit."""
    ours, theirs = _params(1), _params(1)
    ref = torch.optim.Adam(theirs, lr=1e-3, eps=1e-5, fused=True)
    for step in range(2):
        _grads(theirs, step)
        ref.step()
    with torch.no_grad():
        for a, b in zip(ours, theirs, strict=True):
            a.copy_(b)
    mine = FusedAdam(ours, lr=1e-3, eps=1e-5)
    mine.load_state_dict(ref.state_dict())
    for opt, params in ((mine, ours), (ref, theirs)):
        _grads(params, 5)
        opt.step()
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_a_parameter_without_a_gradient_keeps_no_state_and_is_not_moved():
    params = _params(2)
    opt = FusedAdam(params, lr=1e-2, eps=1e-5)
    before = params[1].detach().clone()
    _grads(params, 0)
    params[1].grad = None
    opt.step()
    assert params[1] not in opt.state and torch.equal(params[1], before)
    assert float(opt.state[params[0]]["step"]) == 1.0


def test_clip_grad_norm_matches_torchs_norm_and_gradients():
    ours, theirs = _params(3), _params(3)
    for params in (ours, theirs):
        _grads(params, 0)
    norm = clip_grad_norm(ours, 0.5)
    ref_norm = torch.nn.utils.clip_grad_norm_(theirs, 0.5)
    assert torch.equal(norm, ref_norm) and float(norm) > 0.5
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a.grad, b.grad)


def test_a_learning_cycle_never_imports_torch_dynamo():
    """torch.optim's wrappers import torch._dynamo on first use: 1.3 s at every process's start,
    on the critical path of every run (the main process and each worker)."""
    script = (
        "import sys\n"
        "from gymnasium import spaces\n"
        "import numpy as np\n"
        "from evopop.agents import Agent, NetSpec, PPOParams\n"
        "from evopop.agents.ppo import ppo_update\n"
        "from evopop.envs import make_vec_env\n"
        "from evopop.rollouts.collect import Collector, collect\n"
        "from evopop.seeding import torch_generator\n"
        "envs = make_vec_env('PendulumNoVel-v1', num_envs=2, seed=0)\n"
        "agent = Agent(envs.single_observation_space, envs.single_action_space,\n"
        "              NetSpec(hidden_size=8, head=(8,)),\n"
        "              PPOParams(learn_step=16, batch_size=16))\n"
        "buf = collect(agent, Collector.start(agent, envs, seed=0), 16, torch_generator(0))\n"
        "ppo_update(agent, buf, np.random.default_rng(0))\n"
        "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "False"
