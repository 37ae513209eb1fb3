"""Crafted agent files: every malformed header is one `AgentFileError` line (exit 2 in the CLI),
found before any network is allocated, and a spec must account for exactly the weights carried."""

import copy
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evopop.agents import Agent, NetSpec
from evopop.agents.checkpoint import (
    AgentFileError,
    agent_to_bytes,
    load_agent,
    pack,
    unpack,
)


def _valid() -> tuple[dict, dict]:
    agent = Agent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2),
                  NetSpec(hidden_size=8, head=(8,)))
    return unpack(agent_to_bytes(agent))


def _with(change) -> bytes:
    tensors, meta = _valid()
    meta = copy.deepcopy(meta)
    change(meta)
    return pack(tensors, meta)


def _set(path: str, value):
    def change(meta):
        *parents, leaf = path.split(".")
        node = meta
        for part in parents:
            node = node[part]
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return change


CASES = [
    ("spec-missing", _set("spec", ...), "spec"),
    ("hidden-negative", _set("spec.hidden_size", -5), "hidden_size"),
    ("hidden-string", _set("spec.hidden_size", "64"), "hidden_size"),
    ("hidden-ten-million", _set("spec.hidden_size", 10_000_000), "at most 4096"),
    ("head-million", _set("spec.head", [1_000_000, 1_000_000]), "at most 4096"),
    ("unknown-cell", _set("spec.cell", "rnn"), "cell"),
    ("extra-spec-key", _set("spec.depth", 3), "unknown keys ['depth']"),
    ("extra-header-key", _set("payload", "x"), "payload"),
    ("unknown-space-type", _set("observation_space", {"type": "Graph"}), "observation_space"),
    ("discrete-negative", _set("action_space", {"type": "Discrete", "n": -3, "start": 0}),
     "action_space"),
    ("params-wrong-type", _set("params.lr", "fast"), "lr"),
    ("params-bool-epochs", _set("params.update_epochs", True), "update_epochs"),
    ("params-unknown-key", _set("params.momentum", 0.9), "unknown keys ['momentum']"),
    ("huge-box", _set("observation_space", {"type": "Box", "low": -1.0, "high": 1.0,
                                            "shape": [1_000_000, 1_000_000],
                                            "dtype": "float32"}), "observation_space"),
    ("box-bounds-wrong-shape", _set("observation_space.low", [0.0]), "Box low"),
    ("wrong-version", _set("format_version", 7), "unsupported file format"),
    ("spec-not-matching-weights", _set("spec.hidden_size", 16), "implies"),
    ("spec-no-head-layer", _set("spec.head", []), "implies"),
    ("two-optimizer-groups", _set("optimizer_groups", [{}, {}]), "optimizer_groups"),
]


@pytest.mark.parametrize(("change", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_crafted_header_is_one_agent_file_error_before_allocation(tmp_path, change, fragment):
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(_with(change))
    tracemalloc.start()
    with pytest.raises(AgentFileError, match=re.escape(fragment)) as caught:
        load_agent(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "\n" not in str(caught.value)
    assert peak < 50 << 20  # nothing near what a crafted size would ask for


def test_a_header_that_is_not_an_object_is_refused(tmp_path):
    tensors, _ = _valid()
    path = tmp_path / "list.safetensors"
    path.write_bytes(pack(tensors, [1, 2]))  # type: ignore[arg-type]
    with pytest.raises(AgentFileError, match="not a JSON object"):
        load_agent(path)


def test_a_valid_file_still_loads(tmp_path):
    tensors, meta = _valid()
    path = tmp_path / "ok.safetensors"
    path.write_bytes(pack(tensors, meta))
    assert load_agent(path).spec.hidden_size == 8


def test_evaluate_on_a_crafted_file_is_one_line_and_exit_2(tmp_path: Path):
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(_with(_set("spec.hidden_size", 10_000_000)))
    proc = subprocess.run([sys.executable, "-m", "evopop.cli", "evaluate", str(path),
                           "--env", "CartPole-v1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "hidden_size must be at most 4096" in proc.stderr


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
FIELDS = ["spec", "params", "observation_space", "action_space", "optimizer_groups", "format",
          "format_version", "extra"]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(FIELDS), st.one_of(st.none(), st.text(max_size=10)), JSON)
def test_fuzzed_headers_load_or_raise_one_agent_file_error(field, key, value):
    tensors, meta = _valid()
    meta = copy.deepcopy(meta)
    if key is not None and isinstance(meta[field], dict):
        meta[field][key] = value
    else:
        meta[field] = value
    try:
        unpacked = unpack(pack(tensors, meta))
        from evopop.agents.checkpoint import agent_from_parts

        agent_from_parts(*unpacked)
    except AgentFileError as error:
        assert "\n" not in str(error)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=256), st.integers(0, 2000))
def test_fuzzed_bytes_never_escape_as_anything_but_an_agent_file_error(noise, at):
    data = bytearray(agent_to_bytes(_valid_agent()))
    data[at:at + len(noise)] = noise
    try:
        from evopop.agents.checkpoint import agent_from_bytes

        agent_from_bytes(bytes(data))
    except AgentFileError:
        pass


def _valid_agent() -> Agent:
    return Agent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2),
                 NetSpec(hidden_size=8, head=(8,)))
