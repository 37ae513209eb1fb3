"""Fuzzing configs: whatever mapping a YAML file can hold, validation either returns a config or
raises the one-line `ConfigError`, never anything else; an accepted config's memory estimate is
computable; and through the CLI every input ends in exit 0 or a one-line exit 2 within bounds."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from gymnasium.spaces import Discrete
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evopop.agents.spaces import ActionSpec
from evopop.config import ConfigError, parse_config
from evopop.evolution.footprint import run_bytes

KEYS = {
    "env": ["id", "num_envs", "vectorization", "env_workers", "wrappers", "kwargs", "packages"],
    "net": ["cell", "hidden_size", "num_layers", "head", "activation", "sde", "log_std_init"],
    "ppo": ["lr", "learn_step", "batch_size", "update_epochs", "gamma", "clip_coef", "vf_clip",
            "max_seq_len", "target_kl", "anneal"],
    "evolution": ["population_size", "tournament_size", "evo_steps", "target", "mutation"],
    "": ["max_steps", "eval_episodes", "seed", "backend", "parallel_members", "workers"],
}
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["CartPoleNoVel-v1", "lstm", "gru", "none", "sync", "async", "independent",
                     "relu", "ray", "local", "mask_velocity"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


@st.composite
def configs(draw: st.DrawFn) -> dict:
    data: dict = {"env": {"id": "CartPoleNoVel-v1"}}
    for section, keys in KEYS.items():
        for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
            value = draw(VALUES)
            if section:
                node = data.setdefault(section, {})
                if isinstance(node, dict):
                    node[key] = value
            else:
                data[key] = value
    if draw(st.booleans()):
        data[draw(st.sampled_from([*KEYS, "bogus"])) or "x"] = draw(VALUES)
    return data


def _validate(data: dict) -> None:
    try:
        config = parse_config(data)
    except ConfigError as error:
        assert "\n" not in str(error) and str(error)
        return
    assert run_bytes(config, 4, ActionSpec.from_space(Discrete(2))) > 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_validation_returns_a_config_or_a_config_error(data: dict) -> None:
    _validate(data)


def test_a_key_with_a_line_break_is_named_on_one_line() -> None:
    """What the fuzzer once found: an unknown key's own line break in the message."""
    _validate({"env": {"id": "CartPoleNoVel-v1"}, "net": {"\n": None}})
    _validate({"env": {"id": "CartPoleNoVel-v1"}, "bad\rkey\n": 1})


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_validation_fuzz_long(data: dict) -> None:
    _validate(data)


def _limited() -> None:
    two_gib = 2 << 30
    resource.setrlimit(resource.RLIMIT_AS, (two_gib, two_gib))


def _cli(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "fuzz.yaml"
    cfg.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "evopop.cli", "train", str(cfg), "--run-dir", str(tmp_path / "r"),
         "--overwrite", "--quiet", "--steps", "64", "--parallel-members", "1"],
        capture_output=True, text=True, timeout=60, preexec_fn=_limited)


CLI_CASES = [
    "env: {id: CartPoleNoVel-v1, num_envs: 2}\nppo: {learn_step: 32, batch_size: 64}\n",
    "env: {id: CartPoleNoVel-v1}\nppo: {lr: .nan}\n",
    "env: " + "[" * 3000 + "]" * 3000 + "\n",
    "env: {id: CartPoleNoVel-v1, num_envs: 100000000}\n",
    "net: {hidden_size: 10000000}\nenv: {id: CartPoleNoVel-v1}\n",
    "\x00\x01\x02binary",
    "env: &a [*a]\n",
]


@pytest.mark.parametrize("text", CLI_CASES, ids=range(len(CLI_CASES)))
def test_cli_input_ends_in_success_or_one_line_under_limits(tmp_path: Path, text: str) -> None:
    proc = _cli(tmp_path, text)
    if proc.returncode == 0:
        return
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("evopop: "), proc.stderr
    assert "Traceback" not in proc.stderr
