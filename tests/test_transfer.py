"""Weight transfer between specs: grown networks compute what the old ones did; gates stay put."""

import dataclasses

import pytest
import torch
from gymnasium import spaces

from evopop.agents.networks import ActorCritic
from evopop.agents.spaces import ActionSpec, PolicyHead
from evopop.agents.spec import NetSpec
from evopop.agents.transfer import SILENT_LOG_STD, transfer_weights
from evopop.seeding import torch_generator

OBS_DIM = 3
BOX = ActionSpec.from_space(spaces.Box(-1, 1, (2,)))
DISCRETE = ActionSpec.from_space(spaces.Discrete(4))


def build(spec: NetSpec, action: ActionSpec = BOX, seed: int = 0) -> ActorCritic:
    """A net whose biases and log-std are non-zero too, so misplaced copies show up."""
    net = ActorCritic(spec, OBS_DIM, action, torch_generator(seed))
    gen = torch_generator(seed + 100)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return net


def grown(old: ActorCritic, action: ActionSpec = BOX, **changes) -> ActorCritic:
    new = ActorCritic(dataclasses.replace(old.spec, **changes), OBS_DIM, action,
                      torch_generator(7))
    transfer_weights(old, new)
    return new


def pad_state(state: torch.Tensor, hidden: int) -> torch.Tensor:
    """Old state in the leading block of a zero state of the new hidden size."""
    out = torch.zeros(*state.shape[:-1], hidden)
    out[..., : state.shape[-1]] = state
    return out


def inputs(net: ActorCritic, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random obs `[L, B, D]` and a random (non-zero) recurrent state."""
    gen = torch_generator(seed)
    obs = torch.randn(6, 5, OBS_DIM, generator=gen)
    state = net.initial_state(5)
    return obs, torch.randn(state.shape, generator=gen)


@torch.no_grad()
def assert_same_function(old: ActorCritic, new: ActorCritic) -> None:
    obs, state = inputs(old)
    out_o, v_o, s_o = old(obs, state)
    new_state = pad_state(state, new.spec.hidden_size) if old.spec.recurrent else state
    out_n, v_n, s_n = new(obs, new_state)
    n_act = old.action.logits_dim
    torch.testing.assert_close(out_n[..., :n_act], out_o[..., :n_act], atol=1e-5, rtol=0)
    torch.testing.assert_close(v_n, v_o, atol=1e-5, rtol=0)
    if old.spec.recurrent:
        torch.testing.assert_close(s_n[..., : old.spec.hidden_size], s_o, atol=1e-5, rtol=0)
    if old.sde_features:
        actions = torch.randn((*out_o.shape[:-1], n_act), generator=torch_generator(4))
        logp_o = PolicyHead(old.action, old.sde_features).log_prob(out_o, old.log_std, actions)
        logp_n = PolicyHead(new.action, new.sde_features).log_prob(out_n, new.log_std, actions)
        torch.testing.assert_close(logp_n, logp_o, atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", [(16,), ()], ids=["head16", "nohead"])
@pytest.mark.parametrize("shared", [False, True], ids=["separate", "shared"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_grown_hidden_size_preserves_function(cell, layers, shared, head):
    old = build(NetSpec(cell=cell, hidden_size=8, num_layers=layers, head=head,
                        shared_encoder=shared))
    new = grown(old, hidden_size=13)
    assert new.rnn_actor.hidden_size == 13
    assert_same_function(old, new)


@pytest.mark.parametrize("cell", ["lstm", "gru", "none"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
def test_more_head_nodes_preserve_function(cell, activation):
    old = build(NetSpec(cell=cell, hidden_size=8, head=(16, 8), activation=activation))
    assert_same_function(old, grown(old, head=(16, 24)))
    assert_same_function(old, grown(old, head=(40, 8)))


def test_more_head_nodes_preserve_discrete_logits():
    old = build(NetSpec(cell="gru", hidden_size=8, head=(8,)), DISCRETE)
    assert old.log_std is None
    assert_same_function(old, grown(old, DISCRETE, head=(20,), hidden_size=12))


@pytest.mark.parametrize("cell", ["lstm", "none"])
def test_new_relu_layer_starts_as_identity(cell):
    old = build(NetSpec(cell=cell, hidden_size=8, head=(12,), activation="relu"))
    new = grown(old, head=(12, 12))
    torch.testing.assert_close(new.body_actor[2].weight, torch.eye(12))
    assert not new.body_critic[2].bias.any()
    assert_same_function(old, new)


def test_gsde_growth_keeps_log_probs_and_silences_new_features():
    old = build(NetSpec(cell="lstm", hidden_size=8, head=(10,), sde=True))
    new = grown(old, head=(26,))
    assert new.log_std.shape == (26, 2)
    assert (new.log_std[10:] == SILENT_LOG_STD).all()
    torch.testing.assert_close(new.log_std[:10], old.log_std)
    assert_same_function(old, new)


def test_gsde_without_head_follows_hidden_size():
    old = build(NetSpec(cell="gru", hidden_size=8, head=(), sde=True, shared_encoder=True))
    new = grown(old, hidden_size=20)
    assert new.log_std.shape == (20, 2)
    assert_same_function(old, new)


def test_recurrent_weights_are_copied_per_gate():
    old = build(NetSpec(cell="lstm", hidden_size=4, num_layers=2, head=(8,)))
    new = grown(old, hidden_size=6)
    o, n = old.rnn_actor, new.rnn_actor
    for g in range(4):
        rows_n, rows_o = slice(g * 6, g * 6 + 4), slice(g * 4, g * 4 + 4)
        torch.testing.assert_close(n.weight_ih_l0[rows_n], o.weight_ih_l0[rows_o])
        torch.testing.assert_close(n.weight_hh_l1[rows_n, :4], o.weight_hh_l1[rows_o])
        torch.testing.assert_close(n.bias_hh_l1[rows_n], o.bias_hh_l1[rows_o])
    # new units feed nothing: their columns in the recurrence, next layer and head are zero
    for weight in (n.weight_hh_l0, n.weight_hh_l1, n.weight_ih_l1, new.body_actor[0].weight):
        assert not weight[:, 4:].any()
    # their incoming weights come from the new module's (random) init
    assert n.weight_ih_l0[4:6].abs().sum() > 0


def test_shrinking_truncates_blocks():
    old = build(NetSpec(cell="gru", hidden_size=10, head=(16, 16)))
    new = grown(old, hidden_size=6, head=(8,))
    for g in range(3):
        torch.testing.assert_close(new.rnn_critic.weight_hh_l0[g * 6 : g * 6 + 6],
                                   old.rnn_critic.weight_hh_l0[g * 10 : g * 10 + 6, :6])
    torch.testing.assert_close(new.body_actor[0].weight, old.body_actor[0].weight[:8, :6])
    torch.testing.assert_close(new.pi.weight, old.pi.weight[:, :8])
    torch.testing.assert_close(new.v.bias, old.v.bias)


def test_same_spec_copies_everything():
    old = build(NetSpec(cell="lstm", hidden_size=8, head=(8, 8), sde=True))
    new = grown(old, activation="relu")
    for (name, p_old), p_new in zip(old.state_dict().items(), new.state_dict().values(),
                                    strict=True):
        torch.testing.assert_close(p_new, p_old, msg=name)


def test_mismatched_cell_keeps_fresh_init_of_encoder_and_its_reader():
    old = build(NetSpec(cell="lstm", hidden_size=8, head=(8,)))
    new_spec = dataclasses.replace(old.spec, cell="gru")
    fresh = ActorCritic(new_spec, OBS_DIM, BOX, torch_generator(7))
    new = grown(old, cell="gru")
    for name, param in fresh.named_parameters():
        if name.startswith(("rnn_", "body_actor.0", "body_critic.0")):
            torch.testing.assert_close(new.get_parameter(name), param, msg=name)
    torch.testing.assert_close(new.pi.weight, old.pi.weight)
    torch.testing.assert_close(new.log_std, old.log_std)


def test_shared_to_separate_encoder_seeds_critic_from_shared_one():
    old = build(NetSpec(cell="lstm", hidden_size=8, head=(8,), shared_encoder=True))
    new = grown(old, shared_encoder=False)
    assert old.rnn_critic is None
    obs, state = inputs(old)
    out_o, v_o, _ = old(obs, state)
    out_n, v_n, _ = new(obs, torch.cat((state, state)))  # both encoders start from the old state
    torch.testing.assert_close(out_n, out_o, atol=1e-6, rtol=0)
    torch.testing.assert_close(v_n, v_o, atol=1e-6, rtol=0)


def test_separate_to_shared_encoder_keeps_actor():
    old = build(NetSpec(cell="gru", hidden_size=8, head=(8,)))
    new = grown(old, shared_encoder=True)
    assert new.rnn_critic is None
    obs, state = inputs(old)
    out_o, _ = old.actor(obs, state)
    out_n, _ = new.actor(obs, state[:1])
    torch.testing.assert_close(out_n, out_o, atol=1e-6, rtol=0)
