"""Crafted run checkpoints: every malformed or inconsistent one is one `AgentFileError` line
(exit 2 on `--resume`), found before its members are built; fuzzed headers, tensor names and
bytes load or end in that error, never anything else."""

import copy
import re
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evopop.agents.checkpoint import AgentFileError, pack, unpack
from evopop.config import dump_config, parse_config
from evopop.evolution.loop import initial_state
from evopop.evolution.population import load_state, save_state

CONFIG = parse_config({
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 2},
    "net": {"hidden_size": 8, "head": [8]},
    "ppo": {"learn_step": 16, "batch_size": 32},
    "max_steps": 128, "eval_episodes": 1,
    "evolution": {"population_size": 2, "evo_steps": 64},
})


def _adam_step(agent) -> None:
    """Adam state, as a trained member carries."""
    for param in agent.net.parameters():
        param.grad = torch.ones_like(param)
    agent.optimizer.step()


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> tuple[dict, dict]:
    """Generation 1 of a population of two: the elite (id 0) and a clone of member 1 (id 2)."""
    state = initial_state(CONFIG)
    for member, fitness in zip(state.members, (3.0, 1.0), strict=True):
        _adam_step(member.agent)
        member.fitness.append(fitness)
        member.env_steps = 64
    state.members[1] = state.members[1].clone(2, 1)
    state.generation, state.next_id, state.total_env_steps = 1, 3, 128
    state.elite_history, state.best_fitness, state.wall_s = [3.0], 3.0, 1.5
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.safetensors"
    save_state(path, state)
    return unpack(path.read_bytes())


def _write(tmp_path: Path, tensors: dict, meta) -> Path:
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(pack(tensors, meta))
    return path


def _set(path: str, value):
    def change(tensors, meta):
        *parents, leaf = path.split(".")
        node = meta
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return change


def _tensor(key: str, value=None):
    def change(tensors, meta):
        if value is None:
            tensors.pop(key)
        else:
            tensors[key] = value
    return change


CASES = [
    ("generation-negative", _set("generation", -1), "generation"),
    ("generation-string", _set("generation", "1"), "generation"),
    ("generation-bool", _set("generation", True), "generation"),
    ("generation-huge", _set("generation", 10**30), "generation"),
    ("env-steps-negative", _set("total_env_steps", -5), "total_env_steps"),
    ("wall-negative", _set("wall_s", -1.0), "wall_s"),
    ("wall-infinite", _set("wall_s", float("inf")), "wall_s"),
    ("best-nan", _set("best_fitness", float("nan")), "best_fitness"),
    ("batch-width-zero", _set("batch_width", 0), "batch_width"),
    ("batch-width-huge", _set("batch_width", 10**9), "batch_width"),
    ("unknown-key", _set("rng_state", [1, 2, 3]), "rng_state"),
    ("members-missing", _set("members", ...), "members"),
    ("no-members", _set("members", []), "members"),
    ("member-unknown-key", _set("members.1.score", 1), "members.1.score"),
    ("member-id-negative", _set("members.1.id", -2), "members.1.id"),
    ("member-steps-float", _set("members.0.env_steps", 64.5), "members.0.env_steps"),
    ("history-too-short", _set("elite_history", []), "0 elite fitnesses for 1 trained"),
    ("history-too-long", _set("elite_history", [3.0, 4.0]), "2 elite fitnesses"),
    ("best-not-best", _set("best_fitness", 9.0), "best_fitness is not the best"),
    ("target-unfinished", _set("target_reached", True), "target_reached but not finished"),
    ("next-id-too-small", _set("next_id", 2), "below next_id 2"),
    ("duplicate-ids", _set("members.1.id", 0), "must be unique"),
    ("parent-younger", _set("members.1.parent_id", 7), "parents are older"),
    ("born-later", _set("members.1.born", 5), "born or scored after generation 1"),
    ("scored-later", _set("members.0.fitness", [1.0, 2.0, 3.0]), "born or scored after"),
    ("more-steps-than-run", _set("members.0.env_steps", 999), "more than the run's 128"),
    ("member-hidden-huge", _set("members.1.agent.spec.hidden_size", 10**7), "at most 4096"),
    ("member-spec-mismatch", _set("members.1.agent.spec.hidden_size", 16), "implies"),
    ("member-not-agent", _set("members.0.agent", {"format": "evopop-agent"}), "member 0"),
    ("wrong-format", _set("format", "evopop-agent"), "is not an evopop run checkpoint"),
    ("wrong-version", _set("format_version", 2), "format_version"),
    ("tensor-of-no-member", _tensor("m7.net.v.bias", torch.zeros(1)), "belongs to no member"),
    ("tensor-without-slot", _tensor("net.v.bias", torch.zeros(1)), "belongs to no member"),
    ("member-weights-missing", _tensor("m1.net.v.bias"), "implies"),
    ("adam-key-crafted", _tensor("m1.optim.x.exp_avg", torch.zeros(1)), "unknown tensor"),
    ("adam-shape", _tensor("m0.optim.0.exp_avg", torch.zeros(2)), "optim.0.exp_avg must be"),
    ("adam-partial", _tensor("m0.optim.3.exp_avg_sq"), "Adam state of parameter 3"),
    ("norm-shape", _tensor("m0.obs_norm.mean", torch.zeros(9, dtype=torch.float64)),
     "obs_norm.mean must be"),
]


@pytest.mark.parametrize(("change", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_crafted_checkpoint_is_one_agent_file_error_before_allocation(tmp_path, valid, change,
                                                                      fragment):
    tensors, meta = dict(valid[0]), copy.deepcopy(valid[1])
    change(tensors, meta)
    path = _write(tmp_path, tensors, meta)
    tracemalloc.start()
    with pytest.raises(AgentFileError, match=re.escape(fragment)) as caught:
        load_state(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    assert peak < 50 << 20  # nothing near what a crafted size would ask for


def test_the_valid_checkpoint_loads_with_its_counters(tmp_path, valid):
    state = load_state(_write(tmp_path, *valid))
    assert (state.generation, state.next_id, state.total_env_steps) == (1, 3, 128)
    assert [m.id for m in state.members] == [0, 2] and state.members[1].parent_id == 1
    assert state.elite_history == [3.0] and state.members[1].fitness == [1.0]


@pytest.mark.parametrize("width", [3, ...])
def test_a_checkpoint_keeps_its_batch_width_and_an_older_one_has_none(tmp_path, valid, width):
    tensors, meta = dict(valid[0]), copy.deepcopy(valid[1])
    _set("batch_width", width)(tensors, meta)  # ...: absent, as before batch_width existed
    assert load_state(_write(tmp_path, tensors, meta)).batch_width == (
        None if width is ... else width)


def test_a_header_that_is_not_an_object_is_not_a_run_checkpoint(tmp_path, valid):
    with pytest.raises(AgentFileError, match="is not an evopop run checkpoint"):
        load_state(_write(tmp_path, valid[0], [1, 2]))


def _limited() -> None:
    two_gib = 2 << 30
    resource.setrlimit(resource.RLIMIT_AS, (two_gib, two_gib))


@pytest.mark.parametrize("case", ["member-hidden-huge", "adam-key-crafted"])
def test_resume_from_a_crafted_checkpoint_is_one_line_and_exit_2(tmp_path, valid, case):
    change, fragment = next(c[1:] for c in CASES if c[0] == case)
    tensors, meta = dict(valid[0]), copy.deepcopy(valid[1])
    change(tensors, meta)
    _write(tmp_path, tensors, meta)
    (tmp_path / "config.yaml").write_text(dump_config(CONFIG))
    proc = subprocess.run([sys.executable, "-m", "evopop.cli", "train", "--resume",
                           str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=60,
                          preexec_fn=_limited)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and fragment in proc.stderr
    assert "Traceback" not in proc.stderr


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
TOP = ["generation", "next_id", "total_env_steps", "wall_s", "best_fitness", "elite_history",
       "target_reached", "finished", "members", "format", "format_version"]
MEMBER = ["id", "parent_id", "born", "env_steps", "fitness", "mutation", "agent"]


def _loads_or_one_error(tmp_path: Path, tensors: dict, meta) -> None:
    try:
        load_state(_write(tmp_path, tensors, meta))
    except AgentFileError as error:
        assert "\n" not in str(error) and str(error)


def _counter(tmp_path: Path, valid, data: st.DataObject) -> None:
    meta = copy.deepcopy(valid[1])
    meta[data.draw(st.sampled_from(TOP))] = data.draw(JSON)
    _loads_or_one_error(tmp_path, valid[0], meta)


def _member(tmp_path: Path, valid, data: st.DataObject) -> None:
    meta = copy.deepcopy(valid[1])
    entry = meta["members"][data.draw(st.integers(0, 1))]
    key, sub = data.draw(st.sampled_from(MEMBER)), data.draw(st.none() | st.text(max_size=8))
    if sub is not None and isinstance(entry[key], dict):
        entry[key][sub] = data.draw(JSON)  # e.g. an unknown or retyped key of its agent header
    else:
        entry[key] = data.draw(JSON)
    _loads_or_one_error(tmp_path, valid[0], meta)


def _tensor_name(tmp_path: Path, valid, data: st.DataObject) -> None:
    tensors = dict(valid[0])
    victim = data.draw(st.sampled_from(sorted(tensors)))
    name = data.draw(st.just(victim) | st.text("mo0123._nepticxvbas", max_size=24))
    shape = data.draw(st.lists(st.integers(0, 5), max_size=3))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64, torch.int64]))
    tensors[name or "x"] = torch.zeros(shape, dtype=dtype)
    _loads_or_one_error(tmp_path, tensors, valid[1])


def _bytes(tmp_path: Path, valid, data: st.DataObject) -> None:
    raw = bytearray(pack(*valid))
    at, noise = data.draw(st.integers(0, 4000)), data.draw(st.binary(min_size=1, max_size=256))
    raw[at:at + len(noise)] = noise
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(bytes(raw))
    try:
        load_state(path)
    except AgentFileError as error:
        assert "\n" not in str(error)


FUZZERS = {"counters": _counter, "members": _member, "tensor-names": _tensor_name,
           "bytes": _bytes}
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("kind", list(FUZZERS))
@FAST
@given(data=st.data())
def test_fuzzed_checkpoints_load_or_raise_one_agent_file_error(tmp_path, valid, kind, data):
    FUZZERS[kind](tmp_path, valid, data)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_checkpoint_fuzz_long(tmp_path, valid, data):
    FUZZERS[data.draw(st.sampled_from(list(FUZZERS)))](tmp_path, valid, data)
