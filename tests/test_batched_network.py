"""Stacked networks equal each member's own network: cells, forward, heads, the batched
collection step (sample for sample), stack/unstack."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.agents.agent import reset_state
from evopop.agents.checkpoint import agent_from_bytes, agent_to_bytes
from evopop.agents.native import NATIVE_MIN_STEPS, library
from evopop.agents.native_gru import gru_native
from evopop.agents.native_lstm import lstm_native
from evopop.batched import draw_sde_noise, group_members, policy_step, reset_states, stack, unstack
from evopop.batched.cells import (
    PER_MEMBER_MIN_STEPS,
    gru_stacked,
    linear,
    lstm_layer,
    lstm_per_member,
    lstm_stacked,
)

ATOL = 1e-5
OBS = spaces.Box(-1.0, 1.0, (5,), np.float32)
ACTIONS = {
    "discrete": spaces.Discrete(3),
    "multi_discrete": spaces.MultiDiscrete([2, 3]),
    "box": spaces.Box(-2.0, 2.0, (2,), np.float32),
}
SPECS = [
    NetSpec(cell="lstm", hidden_size=8, head=(16,)),
    NetSpec(cell="lstm", hidden_size=8, head=(16, 8), shared_encoder=True, num_layers=2,
            activation="relu"),
    NetSpec(cell="gru", hidden_size=8, head=(16,), num_layers=2, activation="elu"),
    NetSpec(cell="gru", hidden_size=8, head=(), shared_encoder=True),
    NetSpec(cell="none", head=(16, 16), activation="gelu"),
    NetSpec(cell="lstm", hidden_size=8, head=(16,), activation="silu", sde=True),
    NetSpec(cell="gru", hidden_size=8, head=(8,), activation="leaky_relu", sde=True),
]


def _spec_id(spec: NetSpec) -> str:
    return f"{spec.cell.value}{spec.num_layers}-shared{spec.shared_encoder}-sde{spec.sde}"


def _members(action: spaces.Space, spec: NetSpec, count: int = 3) -> list[Agent]:
    return [Agent(OBS, action, spec, PPOParams(), seed=s) for s in range(count)]


LSTM_PATHS = {"stacked": lstm_stacked, "per_member": lstm_per_member, "native": lstm_native}
GRU_PATHS = {"stacked": gru_stacked, "native": gru_native}
NATIVE = pytest.mark.skipif(library() is None, reason="no C compiler: the native loops are off")
CELL_PATHS = [(nn.LSTM, "stacked"), (nn.LSTM, "per_member"),
              pytest.param(nn.LSTM, "native", marks=NATIVE), (nn.GRU, "stacked"),
              pytest.param(nn.GRU, "native", marks=NATIVE)]
# (hidden, batch): odd sizes take the C loops' edge paths; 20 x 6 and 70 x 5 their blocks and
# edges (70: gate rows past 64 in the forward's product, past 64 columns in the backward's)
SHAPES = [(7, 4), (20, 6), (70, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("cell", "path"), CELL_PATHS)
def test_cells_equal_torch_modules(cell, path, shape):
    torch.manual_seed(0)
    p, layers, length, width = 3, 2, 6, 5
    hidden, batch = shape
    modules = [cell(width, hidden, layers) for _ in range(p)]
    x = torch.randn(length, p, batch, width)
    h0 = torch.randn(layers, p, batch, hidden)
    c0 = torch.randn(layers, p, batch, hidden)
    stacked = {n: torch.stack([dict(m.named_parameters())[n] for m in modules])
               for n, _ in modules[0].named_parameters()}
    out = x.transpose(0, 1)  # [L, P, B, in] -> [P, L, B, in]
    for k in range(layers):
        w = [stacked[f"{kind}_l{k}"] for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if cell is nn.LSTM:
            out, h, c = LSTM_PATHS[path](out, h0[k], c0[k], *w)
        else:
            out, h = GRU_PATHS[path](out, h0[k], *w)
        for i, m in enumerate(modules):
            ref_state = (h0[:, i], c0[:, i]) if cell is nn.LSTM else h0[:, i]
            ref_out, ref_final = m(x[:, i], ref_state)
            ref_h = ref_final[0] if cell is nn.LSTM else ref_final
            torch.testing.assert_close(h[i], ref_h[k], atol=ATOL, rtol=0)
            if cell is nn.LSTM:
                torch.testing.assert_close(c[i], ref_final[1][k], atol=ATOL, rtol=0)
            if k == layers - 1:
                torch.testing.assert_close(out[i], ref_out, atol=ATOL, rtol=0)


WEIGHT_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("cell", "path"), CELL_PATHS)
def test_gradients_equal_torch_modules(cell, path, shape):
    """Every path's gradients (autograd through the written-out cells, through `torch.lstm` on
    each member's slices of the stacked leaves, or the C loops' backward, whose GRU keeps the
    input- and hidden-side gate gradients apart): input, initial state (h, and c for an
    LSTM), weights and biases, through the outputs and the last state (an LSTM's c, a GRU's
    h), equal `nn.LSTM`'s or `nn.GRU`'s."""
    torch.manual_seed(1)
    lstm = cell is nn.LSTM
    p, length, width = 3, 7, 5
    hidden, batch = shape
    modules = [cell(width, hidden) for _ in range(p)]
    stacked = [torch.stack([dict(m.named_parameters())[n] for m in modules]).detach()
               .requires_grad_() for n in WEIGHT_NAMES]
    x = torch.randn(p, length, batch, width, requires_grad=True)
    states = [torch.randn(p, batch, hidden, requires_grad=True) for _ in range(2 if lstm else 1)]
    probe_out, probe_last = torch.randn(p, length, batch, hidden), torch.randn(p, batch, hidden)
    out, *finals = (LSTM_PATHS if lstm else GRU_PATHS)[path](x, *states, *stacked)
    ((out * probe_out).sum() + (finals[-1] * probe_last).sum()).backward()
    for i, m in enumerate(modules):
        xi = x[i].detach().requires_grad_()  # [L, B, in], the modules' layout
        refs = [s[i].detach()[None].requires_grad_() for s in states]
        ref_out, ref_final = m(xi, tuple(refs) if lstm else refs[0])
        ref_last = ref_final[1] if lstm else ref_final
        ((ref_out * probe_out[i]).sum() + (ref_last[0] * probe_last[i]).sum()).backward()
        torch.testing.assert_close(x.grad[i], xi.grad, atol=ATOL, rtol=0)
        for state, ref in zip(states, refs, strict=True):
            torch.testing.assert_close(state.grad[i], ref.grad[0], atol=ATOL, rtol=0)
        for name, got in zip(WEIGHT_NAMES, stacked, strict=True):
            want = dict(m.named_parameters())[name].grad
            torch.testing.assert_close(got.grad[i], want, atol=ATOL, rtol=0)


def test_lstm_backward_passes_gradcheck():
    """In float64 the written-out cells' gradients match finite differences."""
    torch.manual_seed(2)
    p, length, batch, width, hidden = 2, 4, 3, 3, 4
    shapes = [(p, length, batch, width), (p, batch, hidden), (p, batch, hidden),
              (p, 4 * hidden, width), (p, 4 * hidden, hidden), (p, 4 * hidden), (p, 4 * hidden)]
    inputs = [torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes]

    def layer(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _, c = lstm_stacked(*args)
        return out, c

    assert torch.autograd.gradcheck(layer, inputs)


@pytest.mark.parametrize(("length", "native", "path"), [
    (1, False, "stacked"), (PER_MEMBER_MIN_STEPS - 1, False, "stacked"),
    (PER_MEMBER_MIN_STEPS, False, "per_member"), (16, False, "per_member"),
    pytest.param(1, True, "stacked", marks=NATIVE),
    pytest.param(NATIVE_MIN_STEPS, True, "native", marks=NATIVE),
    pytest.param(16, True, "native", marks=NATIVE)])
def test_lstm_layer_takes_the_path_measured_faster_for_the_length(monkeypatch, length, native,
                                                                   path):
    """On CPU, single steps (collection) run stacked; sequences of NATIVE_MIN_STEPS or more
    run through the C loops where they are built, else from PER_MEMBER_MIN_STEPS member by
    member: `lstm_layer` gives that path's bits."""
    if not native:
        monkeypatch.setattr("evopop.agents.native.library", lambda: None)
    gen = torch.Generator().manual_seed(3)
    p, batch, width, hidden = 3, 4, 5, 6
    args = [torch.randn(s, generator=gen) for s in
            [(p, length, batch, width), (p, batch, hidden), (p, batch, hidden),
             (p, 4 * hidden, width), (p, 4 * hidden, hidden), (p, 4 * hidden), (p, 4 * hidden)]]
    for got, want in zip(lstm_layer(*args), LSTM_PATHS[path](*args), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_stacked_forward_and_head_equal_each_member(spec, action):
    if spec.sde and action != "box":
        pytest.skip("gSDE is for Box actions")
    agents = _members(ACTIONS[action], spec)
    pop = stack(agents)
    gen = torch.Generator().manual_seed(1)
    length, batch = 7, 4
    obs = torch.randn(len(agents), length, batch, OBS.shape[0], generator=gen)
    state = pop.net.initial_state(batch)
    state = torch.randn(state.shape, generator=gen)
    with torch.no_grad():
        refs = [agent.net(obs[p], state[:, :, p]) for p, agent in enumerate(agents)]
        actions = torch.stack([  # drawn from each member's own policy: realistic log-probs
            agent.head.sample(ref[0].flatten(0, 1), agent.net.log_std, False, gen)
            .reshape(length, batch, -1) for agent, ref in zip(agents, refs, strict=True)])
        out, values, new_state = pop.net.forward(obs, state)
        log_std = pop.net.log_std_for(out)
        log_probs = pop.head.log_prob(out, log_std, actions)
        entropy = pop.head.entropy(out, log_std)
        value_only = pop.net.value(obs, state)
        actor_out, actor_state = pop.net.actor(obs, state)
    with torch.inference_mode():  # one step, as group evaluation runs it (the C steps)
        step_out, step_state = pop.net.actor(obs[:, :1], state)
    for p, (agent, (ref_out, ref_values, ref_state)) in enumerate(zip(agents, refs, strict=True)):
        with torch.no_grad():
            ref_lp = agent.head.log_prob(ref_out, agent.net.log_std, actions[p])
            ref_ent = agent.head.entropy(ref_out, agent.net.log_std)
            _, ref_actor_state = agent.net.actor(obs[p], state[:, :, p])
            ref_step_out, ref_step_state = agent.net.actor(obs[p, :1], state[:, :, p])
        for got, want in [(out[p], ref_out), (values[p], ref_values), (value_only[p], ref_values),
                          (new_state[:, :, p], ref_state), (log_probs[p], ref_lp),
                          (entropy[p], ref_ent), (actor_out[p], ref_out),
                          (actor_state[:, :, p], ref_actor_state),
                          (step_out[p], ref_step_out), (step_state[:, :, p], ref_step_state)]:
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def _clone(gen: torch.Generator) -> torch.Generator:
    twin = torch.Generator()
    twin.set_state(gen.get_state())
    return twin


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_policy_step_equals_member_steps(spec, action):
    if spec.sde and action != "box":
        pytest.skip("gSDE is for Box actions")
    agents = _members(ACTIONS[action], spec)
    pop = stack(agents)
    n, steps = 5, 4
    gens = [torch.Generator().manual_seed(7 + p) for p in range(len(agents))]
    ref_gens = [_clone(g) for g in gens]
    data = np.random.default_rng(0)
    state = pop.net.initial_state(n)
    ref_states = [a.initial_state(n) for a in agents]
    noise = draw_sde_noise(pop, n, gens) if spec.sde else None
    ref_noise = [a.head.sde_noise(n, a.net.log_std, g) if spec.sde else None
                 for a, g in zip(agents, ref_gens, strict=True)]
    for _ in range(steps):
        obs = torch.from_numpy(data.standard_normal((len(agents), n, 5)).astype(np.float32))
        starts = data.random((len(agents), n)) < 0.3
        state = reset_states(state, starts)
        out = policy_step(pop, obs, state, gens, noise)
        state = out.state
        for p, agent in enumerate(agents):
            with torch.inference_mode():
                s = reset_state(ref_states[p], starts[p])
                logits, value, ref_states[p] = agent.net(obs[p][None], s)
                log_std = agent.net.log_std
                act = agent.head.sample(logits[0], log_std, False, ref_gens[p], ref_noise[p])
                log_prob = agent.head.log_prob(logits[0], log_std, act)
            if agent.action_spec.kind.value == "continuous":
                torch.testing.assert_close(out.actions[p], act, atol=1e-5, rtol=0)
            else:
                assert torch.equal(out.actions[p], act)
            torch.testing.assert_close(out.log_probs[p], log_prob, atol=1e-5, rtol=0)
            torch.testing.assert_close(out.values[p], value[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(state[:, :, p], ref_states[p], atol=1e-5, rtol=0)
    for g, ref in zip(gens, ref_gens, strict=True):  # every member's stream advanced alike
        assert torch.equal(g.get_state(), ref.get_state())


def test_stacked_members_differ_and_unstack_writes_each_member_back():
    agents = _members(ACTIONS["box"], SPECS[0])
    pop = stack(agents)
    w = pop.net.params["rnn_actor.weight_ih_l0"]
    assert not torch.equal(w[0], w[1])  # members keep their own weights
    with torch.no_grad():
        for param in pop.net.params.values():
            param.add_(torch.arange(len(agents)).view(-1, *[1] * (param.dim() - 1)) + 1.0)
    before = [agent_to_bytes(a) for a in agents]
    unstack(pop, agents)
    for p, agent in enumerate(agents):
        for name, param in agent.net.named_parameters():
            assert torch.equal(param, pop.net.params[name][p].detach())
        assert agent_to_bytes(agent) != before[p]
        loaded = agent_from_bytes(agent_to_bytes(agent))
        for a, b in zip(loaded.net.parameters(), agent.net.parameters(), strict=True):
            assert torch.equal(a, b)


def test_group_members_splits_by_spec_and_space():
    lstm, gru = SPECS[0], SPECS[2]
    agents = [Agent(OBS, ACTIONS["box"], lstm, PPOParams(lr=1e-3)),
              Agent(OBS, ACTIONS["box"], gru),
              Agent(OBS, ACTIONS["discrete"], lstm),
              Agent(OBS, ACTIONS["box"], lstm, PPOParams(lr=3e-4, batch_size=64, learn_step=32))]
    assert group_members(agents, by_structure=False) == [[0, 3], [1], [2]]
    assert group_members(agents) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="group_members"):
        stack(agents[:2])
    agents[3].set_params(agents[0].params)
    assert group_members(agents) == [[0, 3], [1], [2]]
    agents[3].optimizer.param_groups[0]["weight_decay"] = 0.01  # as an agent file may carry
    assert group_members(agents, by_structure=False) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError, match="weight decay"):
        stack([agents[0], agents[3]])


@pytest.mark.parametrize("out_features", [1, 5])
def test_linear_gradients_equal_nn_linear(out_features):
    """`linear`'s own backward (weight gradient as grad^T @ x; an output layer's input gradient
    as a broadcast multiply) gives nn.Linear's gradients, for each member."""
    torch.manual_seed(2)
    p, m, width = 3, 7, 4
    modules = [nn.Linear(width, out_features) for _ in range(p)]
    weight = torch.stack([mod.weight.detach() for mod in modules]).requires_grad_()
    bias = torch.stack([mod.bias.detach() for mod in modules]).requires_grad_()
    x = torch.randn(p, 2, m, width, requires_grad=True)
    probe = torch.randn(p, 2, m, out_features)
    (linear(x, weight, bias) * probe).sum().backward()
    for i, mod in enumerate(modules):
        xi = x[i].detach().requires_grad_()
        (mod(xi) * probe[i]).sum().backward()
        torch.testing.assert_close(x.grad[i], xi.grad, atol=ATOL, rtol=0)
        torch.testing.assert_close(weight.grad[i], mod.weight.grad, atol=ATOL, rtol=0)
        torch.testing.assert_close(bias.grad[i], mod.bias.grad, atol=ATOL, rtol=0)
