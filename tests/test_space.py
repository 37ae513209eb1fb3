"""Hyperparameter space: bounds always hold, ints stay ints, log ranges sample on a log scale."""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evopop.agents.spec import PPOParams
from evopop.evolution.space import DEFAULT_HP_SPACE, HPRange, HPSpace, HPType


@st.composite
def ranges(draw) -> HPRange:
    kind = draw(st.sampled_from(HPType))
    log = draw(st.booleans())
    if kind is HPType.INT:
        low = draw(st.integers(1 if log else -1000, 10_000))
        high = draw(st.integers(low, 20_000))
    else:
        low = draw(st.floats(1e-8 if log else -1e6, 1e6))
        high = draw(st.floats(low, 1e7))
    return HPRange(low, high, kind, log)


def in_bounds(r: HPRange, value) -> bool:
    typed = isinstance(value, int) if r.kind is HPType.INT else isinstance(value, float)
    return typed and r.low <= value <= r.high


@settings(max_examples=200, deadline=None)
@given(r=ranges(), seed=st.integers(0, 2**32 - 1))
def test_sample_is_in_bounds_and_typed(r, seed):
    value = r.sample(np.random.default_rng(seed))
    assert in_bounds(r, value)


@settings(max_examples=200, deadline=None)
@given(r=ranges(), value=st.floats(-1e9, 1e9), seed=st.integers(0, 2**32 - 1),
       factor=st.floats(0.01, 2.0))
def test_perturb_is_in_bounds_and_ints_always_move(r, value, seed, factor):
    new = r.perturb(value, np.random.default_rng(seed), factor)
    assert in_bounds(r, new)
    if r.kind is HPType.INT and r.low < r.high:
        assert new != r.clip(value)


@given(seed=st.integers(0, 2**32 - 1))
def test_perturb_moves_away_from_the_bound_it_sits_on(seed):
    r = HPRange(0.0, 0.1)
    assert r.perturb(0.0, np.random.default_rng(seed)) > 0.0  # multiplicative would stay at 0
    assert r.perturb(0.1, np.random.default_rng(seed)) < 0.1


def test_log_perturbation_is_multiplicative():
    r = HPRange(1e-5, 1e-2, log=True)
    rng = np.random.default_rng(0)
    ratios = [r.perturb(1e-4, rng, 0.2) / 1e-4 for _ in range(200)]
    assert all(1 / 1.2 - 1e-9 <= x <= 1.2 + 1e-9 for x in ratios)
    assert min(ratios) < 0.95 and max(ratios) > 1.05


def test_log_range_samples_log_uniformly():
    rng = np.random.default_rng(0)
    log_range, lin_range = HPRange(1e-5, 1e-2, log=True), HPRange(1e-5, 1e-2)
    mid = math.sqrt(1e-5 * 1e-2)  # geometric midpoint
    below_log = np.mean([log_range.sample(rng) < mid for _ in range(2000)])
    below_lin = np.mean([lin_range.sample(rng) < mid for _ in range(2000)])
    assert 0.45 < below_log < 0.55
    assert below_lin < 0.05


def test_int_sampling_reaches_both_end_points():
    rng = np.random.default_rng(1)
    values = [HPRange(1, 3, HPType.INT).sample(rng) for _ in range(600)]
    counts = np.bincount(values)[1:]
    assert counts.min() > 170 and counts.max() < 230  # about 200 each, not 150/300/150


@pytest.mark.parametrize(("args", "match"), [
    ((2.0, 1.0), "low"),
    ((0.0, 1.0, HPType.FLOAT, True), "log"),
    ((1.5, 4, HPType.INT), "integer"),
    ((0.0, math.inf), "finite"),
])
def test_range_validation(args, match):
    with pytest.raises(ValueError, match=match):
        HPRange(*args)


def test_clip_rounds_ints_and_rejects_nan():
    r = HPRange(1, 20, HPType.INT)
    assert r.clip(7.6) == 8 and isinstance(r.clip(7.6), int)
    assert r.clip(-3) == 1 and r.clip(1e9) == 20
    with pytest.raises(ValueError):
        r.clip(math.nan)


def test_default_space_bounds():
    expected = {"lr": (1e-5, 1e-2, HPType.FLOAT, True),
                "batch_size": (32, 4096, HPType.INT, True),
                "learn_step": (16, 4096, HPType.INT, True),
                "ent_coef": (0.0, 0.1, HPType.FLOAT, False),
                "clip_coef": (0.05, 0.5, HPType.FLOAT, False),
                "gae_lambda": (0.8, 1.0, HPType.FLOAT, False),
                "update_epochs": (1, 20, HPType.INT, False)}
    for name, values in expected.items():
        assert dataclasses.astuple(DEFAULT_HP_SPACE[name]) == values


def test_from_dict_infers_int_from_field_type_and_round_trips():
    space = HPSpace.from_dict({"lr": {"low": 1e-4, "high": 1e-3, "log": True},
                               "update_epochs": {"low": 2, "high": 8},
                               "max_grad_norm": {"low": 0.1, "high": 2, "kind": "float"}})
    assert space["update_epochs"].kind is HPType.INT
    assert space["lr"].kind is HPType.FLOAT and space["lr"].log
    assert isinstance(space["max_grad_norm"].high, float)
    assert HPSpace.from_dict(space.to_dict()) == space
    assert HPSpace.from_dict(DEFAULT_HP_SPACE.to_dict()) == DEFAULT_HP_SPACE
    assert hash(HPSpace.from_dict(space.to_dict())) == hash(space)


@pytest.mark.parametrize(("data", "match"), [
    ({"batchsize": {"low": 32, "high": 64}}, "did you mean 'batch_size'"),
    ({"lr": {"low": 1e-4}}, "'low' and 'high'"),
    ({"lr": {"low": 1e-4, "high": 1e-3, "scale": "log"}}, "unknown keys"),
    ({"lr": {"low": 0.0, "high": 1e-3}}, "lr must be > 0"),
    ({"gamma": {"low": 0.9, "high": 1.5}}, "gamma"),
    ({"norm_adv": {"low": 0, "high": 1}}, "switch"),
    ({"gamma": {"low": 0, "high": 1, "kind": "int"}}, "float field"),
    ({"learn_step": {"low": 16, "high": 64, "kind": "float"}}, "positive integer"),
    ({"lr": {"low": 1e-4, "high": 1e-3, "kind": "complex"}}, "complex"),
])
def test_from_dict_rejects_bad_entries(data, match):
    with pytest.raises(ValueError, match=match):
        HPSpace.from_dict(data)


def test_space_is_immutable():
    with pytest.raises(TypeError):
        DEFAULT_HP_SPACE["lr"] = HPRange(1e-4, 1e-3)  # type: ignore[index]


@given(seed=st.integers(0, 2**32 - 1))
def test_sample_params_draws_every_hp_in_bounds(seed):
    base = PPOParams(gamma=0.9)
    params = DEFAULT_HP_SPACE.sample_params(base, np.random.default_rng(seed))
    for name, r in DEFAULT_HP_SPACE.items():
        assert in_bounds(r, getattr(params, name)), name
    assert params.gamma == 0.9 and params.max_seq_len == base.max_seq_len
    again = DEFAULT_HP_SPACE.sample_params(base, np.random.default_rng(seed))
    assert again == params


@given(seed=st.integers(0, 2**32 - 1))
def test_mutate_params_changes_exactly_one_hp_in_bounds(seed):
    base = PPOParams()
    params, name, old, new = DEFAULT_HP_SPACE.mutate_params(base, np.random.default_rng(seed))
    assert name in DEFAULT_HP_SPACE and old == getattr(base, name)
    assert new == getattr(params, name) and in_bounds(DEFAULT_HP_SPACE[name], new)
    changed = [k for k, v in params.to_dict().items() if v != base.to_dict()[k]]
    assert changed == [name]


def test_mutate_params_chooses_uniformly_among_names():
    rng = np.random.default_rng(0)
    names = [DEFAULT_HP_SPACE.mutate_params(PPOParams(), rng, names=["lr", "ent_coef"])[1]
             for _ in range(400)]
    assert set(names) == {"lr", "ent_coef"}
    assert 160 < names.count("lr") < 240


def test_mutate_params_samples_unset_fields_and_rejects_unknown_names():
    space = HPSpace({"target_kl": HPRange(0.005, 0.05)})
    params, _, old, new = space.mutate_params(PPOParams(), np.random.default_rng(0))
    assert old is None and 0.005 <= params.target_kl == new <= 0.05
    with pytest.raises(ValueError, match="ent_coef"):
        space.mutate_params(PPOParams(), np.random.default_rng(0), names=["ent_coef"])
