"""Mutations: growth keeps the function, the optimizer covers every parameter, Adam keeps its
moments, noise never touches normaliser statistics, and one seed gives one history."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from evopop.agents import Agent, NetSpec, PPOParams
from evopop.agents.spec import Activation
from evopop.evolution.mutation import MutationEvent, MutationKind, mutate
from evopop.evolution.settings import MutationSettings
from evopop.evolution.space import DEFAULT_HP_SPACE, HPSpace
from evopop.seeding import torch_generator

BOX_OBS = gym.spaces.Box(-1, 1, (3,))
ONLY = {kind: {k.value: float(k is kind) for k in MutationKind} for kind in MutationKind}

SPECS = [
    NetSpec(cell="lstm", hidden_size=16, head=(16,)),
    NetSpec(cell="lstm", hidden_size=16, num_layers=2, head=(16,), shared_encoder=True),
    NetSpec(cell="gru", hidden_size=16, head=(16,)),
    NetSpec(cell="gru", hidden_size=16, num_layers=2, head=(16,), shared_encoder=True),
    NetSpec(cell="none", head=(16,)),
]
SPEC_IDS = ["lstm", "lstm2-shared", "gru", "gru2-shared", "none"]


def make(spec: NetSpec, discrete: bool = False, seed: int = 0) -> Agent:
    action = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1, 1, (1,))
    return Agent(BOX_OBS, action, spec, PPOParams(lr=1e-3), seed=seed)


def run(agent: Agent, kind: MutationKind, seed: int = 0, **config) -> MutationEvent:
    cfg = MutationSettings(**{**ONLY[kind], **config})
    return mutate(agent, cfg, np.random.default_rng(seed), torch_generator(seed))


@torch.no_grad()
def outputs(agent: Agent, state_shape: torch.Size) -> tuple[torch.Tensor, ...]:
    """Actor means, values and log-probs of fixed actions on fixed random sequences, from a
    random state of `state_shape` zero-padded to the agent's hidden size."""
    gen = torch_generator(5)
    obs = torch.randn(7, 4, 3, generator=gen)
    state = torch.randn(state_shape, generator=gen)
    padded = agent.net.initial_state(4)
    padded[..., : state.shape[-1]] = state
    out, value, _ = agent.net(obs, padded)
    actions = torch.randn(7, 4, 1, generator=gen)
    log_prob = agent.head.log_prob(out, agent.net.log_std, actions)
    return out[..., :1], value, log_prob


def assert_preserved(agent: Agent, kind: MutationKind, **config) -> MutationEvent:
    shape = agent.initial_state(4).shape
    before = outputs(agent, shape)
    event = run(agent, kind, **config)
    assert event.kind is kind and event.old != event.new
    after = outputs(agent, shape)
    for a, b in zip(after, before, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    return event


@pytest.mark.parametrize("spec", SPECS[:4], ids=SPEC_IDS[:4])
def test_growing_hidden_size_preserves_function(spec):
    agent = make(spec)
    limits = {"min_hidden": 16, "min_nodes": 16, "max_nodes": 16}  # only growth is possible
    event = assert_preserved(agent, MutationKind.ARCHITECTURE, **limits)
    assert event.detail == "grow_hidden hidden_size" and agent.spec.hidden_size > 16


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_adding_head_nodes_preserves_function(spec):
    agent = make(spec)
    limits = {"min_hidden": 16, "max_hidden": 16, "min_nodes": 16}
    event = assert_preserved(agent, MutationKind.ARCHITECTURE, **limits)
    assert event.detail == "add_nodes head[0]" and agent.spec.head[0] > 16


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_new_relu_layer_preserves_function(spec):
    agent = make(NetSpec(**{**spec.to_dict(), "activation": "relu"}))
    event = assert_preserved(agent, MutationKind.NEW_LAYER)
    assert event.new == (16, 16)


def test_gsde_growth_preserves_log_probs():
    agent = make(NetSpec(cell="lstm", hidden_size=16, head=(16,), sde=True))
    assert agent.net.sde_features == 16
    event = assert_preserved(agent, MutationKind.ARCHITECTURE, min_hidden=16, min_nodes=16,
                             max_nodes=16)
    assert event.detail == "grow_hidden hidden_size"
    hidden = agent.spec.hidden_size
    event = assert_preserved(agent, MutationKind.ARCHITECTURE, min_hidden=hidden,
                             max_hidden=hidden, min_nodes=16)
    assert event.detail == "add_nodes head[0]" and agent.net.sde_features > 16


def optimizer_params(agent: Agent) -> list[torch.nn.Parameter]:
    return [p for group in agent.optimizer.param_groups for p in group["params"]]


@pytest.mark.parametrize("kind", [MutationKind.ARCHITECTURE, MutationKind.NEW_LAYER,
                                  MutationKind.ACTIVATION])
@pytest.mark.parametrize("spec", [SPECS[0], SPECS[2], SPECS[4]], ids=["lstm", "gru", "none"])
def test_optimizer_covers_exactly_the_new_parameters(spec, kind):
    agent = make(spec)
    old_params = list(agent.net.parameters())  # kept alive so their ids are not reused
    for seed in range(3):
        assert run(agent, kind, seed=seed).kind is kind
    params = optimizer_params(agent)
    assert len(params) == len({id(p) for p in params})
    assert {id(p) for p in params} == {id(p) for p in agent.net.parameters()}
    assert agent.net.rnn_critic is None or any(p is agent.net.v.weight for p in params)
    assert not {id(p) for p in old_params} & {id(p) for p in params}


def take_step(agent: Agent) -> None:
    out, value, _ = agent.net(torch.ones(2, 1, 3), agent.initial_state(1))
    agent.optimizer.zero_grad()
    (out.pow(2).sum() + value.pow(2).sum() + agent.net.log_std.sum()).backward()
    agent.optimizer.step()


def test_lr_mutation_keeps_adam_moments():
    agent = make(SPECS[0])
    take_step(agent)
    moments = {id(p): s["exp_avg"].clone() for p, s in agent.optimizer.state.items()}
    optimizer = agent.optimizer
    event = run(agent, MutationKind.HYPERPARAMETER,
                hp_space=HPSpace({"lr": DEFAULT_HP_SPACE["lr"]}))
    assert event.detail == "lr" and event.old == 1e-3 and event.new != 1e-3
    assert agent.optimizer is optimizer and agent.params.lr == event.new
    agent.apply_lr()
    assert all(g["lr"] == event.new for g in agent.optimizer.param_groups)
    assert len(moments) == len(optimizer_params(agent))
    for p, state in agent.optimizer.state.items():
        torch.testing.assert_close(state["exp_avg"], moments[id(p)], atol=0, rtol=0)


def test_parameter_noise_changes_weights_only_and_is_reproducible():
    spec = NetSpec(cell="lstm", hidden_size=16, head=(16,), sde=True)  # 2-D log_std
    agents = [make(spec, seed=3) for _ in range(2)]
    for agent in agents:
        agent.preprocess(np.random.default_rng(0).normal(size=(50, 3)), update=True)
        take_step(agent)
    norm = agents[0].obs_norm.rms.state()
    before = {k: v.clone() for k, v in agents[0].net.state_dict().items()}
    optimizer = agents[0].optimizer
    events = [run(agent, MutationKind.PARAMETERS, seed=9) for agent in agents]
    assert events[0] == events[1] and events[0].old != events[0].new
    after = agents[0].net.state_dict()
    for name, value in after.items():
        changed = not torch.equal(value, before[name])
        assert changed == (value.dim() >= 2 and name != "log_std"), name
        torch.testing.assert_close(value, agents[1].net.state_dict()[name], atol=0, rtol=0)
    for key, value in agents[0].obs_norm.rms.state().items():
        np.testing.assert_array_equal(value, norm[key])
    assert agents[0].optimizer is optimizer and len(optimizer.state) > 0


def test_activation_switch_keeps_every_weight():
    agent = make(SPECS[0])
    before = {k: v.clone() for k, v in agent.net.state_dict().items()}
    event = run(agent, MutationKind.ACTIVATION, activations=(Activation.TANH, Activation.ELU))
    assert (event.old, event.new) == (Activation.TANH, Activation.ELU)
    assert agent.spec.activation is Activation.ELU
    assert isinstance(agent.net.body_actor[1], torch.nn.ELU)
    for name, value in agent.net.state_dict().items():
        torch.testing.assert_close(value, before[name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize(("kind", "config", "reason"), [
    (MutationKind.NEW_LAYER, {"max_layers": 1}, "new_layer skipped"),
    (MutationKind.ACTIVATION, {"activations": (Activation.TANH,)}, "activation skipped"),
    (MutationKind.ARCHITECTURE, {"min_nodes": 16, "max_nodes": 16}, "architecture skipped"),
])
def test_impossible_mutation_is_recorded_as_none(kind, config, reason):
    agent = make(SPECS[4])
    spec = agent.spec
    event = run(agent, kind, **config)
    assert event.kind is MutationKind.NONE and event.detail.startswith(reason)
    assert agent.spec == spec


def test_hyperparameter_mutations_stay_in_bounds():
    agent = make(SPECS[4])
    config = MutationSettings(**ONLY[MutationKind.HYPERPARAMETER])
    rng, gen = np.random.default_rng(0), torch_generator(0)
    for _ in range(200):
        event = mutate(agent, config, rng, gen)
        hp = DEFAULT_HP_SPACE[event.detail]
        assert event.old != event.new
        assert hp.low <= getattr(agent.params, event.detail) == event.new <= hp.high
        assert isinstance(event.new, type(hp.low))


def history(discrete: bool, seed: int, steps: int = 30) -> tuple[list[MutationEvent], Agent]:
    agent = make(NetSpec(cell="gru", hidden_size=8, head=(8,)), discrete=discrete)
    config = MutationSettings(none=0.1, architecture=0.3, new_layer=0.2, parameters=0.2,
                            activation=0.1, hyperparameter=0.2, max_hidden=64, max_nodes=64)
    rng, gen = np.random.default_rng(seed), torch_generator(seed)
    return [mutate(agent, config, rng, gen) for _ in range(steps)], agent


@pytest.mark.parametrize("discrete", [False, True], ids=["box", "discrete"])
def test_same_seed_same_history_and_agent_stays_usable(discrete):
    (events, agent), (again, twin) = history(discrete, 1), history(discrete, 1)
    assert events == again
    assert events != history(discrete, 2)[0]
    assert {e.kind for e in events} == set(MutationKind)
    for name, value in agent.net.state_dict().items():
        torch.testing.assert_close(value, twin.net.state_dict()[name], atol=0, rtol=0)
    for event in events:
        assert event.kind is MutationKind.NONE or event.old != event.new
        json.dumps(event.to_dict())
    actions, _ = agent.act(np.zeros((2, 3), np.float32), agent.initial_state(2))
    assert actions.shape[0] == 2


def test_event_to_dict_is_plain_json():
    event = MutationEvent(MutationKind.NEW_LAYER, "head", (16,), (16, 16))
    assert json.loads(json.dumps(event.to_dict())) == {
        "kind": "new_layer", "detail": "head", "old": [16], "new": [16, 16]}
    switch = MutationEvent(MutationKind.ACTIVATION, "activation", Activation.TANH, Activation.RELU)
    assert switch.to_dict()["new"] == "relu"


def test_probabilities_are_normalised_weights():
    config = MutationSettings(none=1.0, architecture=0, new_layer=0, parameters=0,
                            activation=0, hyperparameter=1.0)
    np.testing.assert_allclose(config.probabilities(), [0.5, 0, 0, 0, 0, 0.5])
    agent, rng, gen = make(SPECS[4]), np.random.default_rng(0), torch_generator(0)
    kinds = [mutate(agent, config, rng, gen).kind for _ in range(400)]
    assert set(kinds) == {MutationKind.NONE, MutationKind.HYPERPARAMETER}
    assert 160 < kinds.count(MutationKind.NONE) < 240


@pytest.mark.parametrize(("changes", "match"), [
    ({"none": -0.1}, "none"),
    ({"parameters": 1.5}, "parameters"),
    ({"architecture": float("nan")}, "architecture"),
    (dict.fromkeys((k.value for k in MutationKind), 0.0), "at least one"),
    ({"mutation_sd": 0.0}, "mutation_sd"),
    ({"activations": ()}, "activations"),
    ({"activations": ("swish",)}, "swish"),
    ({"min_nodes": 64, "max_nodes": 32}, "min_nodes"),
    ({"min_hidden": 0}, "min_hidden"),
    ({"max_layers": 0}, "max_layers"),
    ({"node_steps": (16, 0)}, "node_steps"),
    ({"hp_space": HPSpace({})}, "hp_space"),
    ({"hp_space": {"lr": 3}}, "hp_space must map"),
    ({"hp_space": {"gamma": {"low": 0.5, "high": 2.0}}}, "gamma"),
])
def test_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        MutationSettings(**changes)
