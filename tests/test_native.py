"""The native LSTM's build: cached by source, compiler and CPU, a fallback flag set, torch's
LSTM where nothing builds or it is switched off, a torn cached file rebuilt."""

import shutil
import stat

import pytest
import torch

from evopop.agents import native, networks
from evopop.agents.native_gru import gru_native, gru_native_step
from evopop.agents.native_lstm import lstm_native, lstm_native_step
from evopop.agents.native_weights import StepWeights
from evopop.batched.cells import gru_layer, gru_stacked, lstm_layer, lstm_per_member

CC = shutil.which("cc") or shutil.which("gcc")
NEEDS_CC = pytest.mark.skipif(CC is None, reason="no C compiler here")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """An empty build cache, and `library()` resolved anew (and again after the test)."""
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(native.SWITCH, raising=False)
    native.library.cache_clear()
    yield tmp_path / "cache"
    native.library.cache_clear()


def _compiler_refusing(tmp_path, flag: str) -> str:
    """A C compiler command that fails whenever `flag` is among its arguments."""
    script = tmp_path / "cc-without-flag"
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = "{flag}" ] && '
                      f'{{ echo "unsupported {flag}" >&2; exit 1; }}; done\nexec {CC} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@NEEDS_CC
def test_the_library_is_built_once_into_the_cache(fresh, monkeypatch):
    monkeypatch.setenv("CC", CC)
    assert native.library() is not None
    built = list(fresh.glob("recurrent-*.so"))
    assert len(built) == 1 and not list(fresh.glob(".*.tmp"))
    mtime = built[0].stat().st_mtime_ns
    native.library.cache_clear()
    monkeypatch.setattr(native, "_compile", lambda *a: pytest.fail("rebuilt a cached library"))
    assert native.library() is not None
    assert built[0].stat().st_mtime_ns == mtime


@NEEDS_CC
def test_another_source_or_compiler_builds_its_own_copy(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", CC)
    native._built()
    other = tmp_path / "lstm.c"
    other.write_text(native.SOURCE.read_text() + "\n/* changed */\n")
    monkeypatch.setattr(native, "SOURCE", other)
    native._built()
    assert len(list(fresh.glob("recurrent-*.so"))) == 2


@NEEDS_CC
def test_a_compiler_without_march_native_gets_the_portable_flags(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", _compiler_refusing(tmp_path, "-march=native"))
    lib = native.library()
    assert lib is not None and hasattr(lib, "ep_lstm_forward")
    native.library.cache_clear()  # a new process: the portable build is cached, no retry
    monkeypatch.setattr(native, "_compile", lambda *a: pytest.fail("retried a failed build"))
    assert native.library() is not None


@NEEDS_CC
def test_a_missing_cc_falls_back_to_the_next_compiler(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert native.compiler()[0] != str(tmp_path / "no-such-cc")
    assert native.library() is not None


@NEEDS_CC
def test_a_torn_cached_file_is_built_again(fresh, monkeypatch):
    monkeypatch.setenv("CC", CC)
    path = native._built()
    path.write_bytes(b"")  # what a power cut during a copy could leave
    assert native.library() is not None
    assert path.stat().st_size > 0


@pytest.mark.parametrize("how", ["switched off", "no compiler", "compiler fails"])
def test_without_the_library_lstm_layer_runs_torch_lstm(fresh, monkeypatch, tmp_path, how):
    if how == "switched off":
        monkeypatch.setenv(native.SWITCH, "0")
    elif how == "no compiler":
        monkeypatch.setattr(native.shutil, "which", lambda name: None)
    else:
        if CC is None:
            pytest.skip("no C compiler here")
        monkeypatch.setenv("CC", _compiler_refusing(tmp_path, "-shared"))
    said: list[str] = []  # the CLI's logging set-up may stop records reaching caplog
    monkeypatch.setattr(native.LOG, "warning", lambda msg, *args: said.append(msg % args))
    assert native.library() is None
    assert (how == "switched off") == (not said)
    if how != "switched off":
        assert len(said) == 1 and "native LSTM and GRU are off" in said[0]
    gen = torch.Generator().manual_seed(0)
    p, length, batch, width, hidden = 2, 5, 3, 4, 6
    args = [torch.randn(s, generator=gen) for s in
            [(p, length, batch, width), (p, batch, hidden), (p, batch, hidden),
             (p, 4 * hidden, width), (p, 4 * hidden, hidden), (p, 4 * hidden), (p, 4 * hidden)]]
    for got, want in zip(lstm_layer(*args), lstm_per_member(*args), strict=True):
        assert torch.equal(got, want)


@pytest.mark.skipif(native.library() is None, reason="no C compiler: the native loops are off")
@pytest.mark.parametrize(("cell", "loops", "channels"), [
    (torch.nn.LSTM, "lstm_native", 2), (torch.nn.GRU, "gru_native", 1)])
def test_a_single_agents_sequences_run_native_and_equal_torch(monkeypatch, cell, loops,
                                                              channels):
    """`run_rnn` (a single agent's update) takes the C loops for sequences, as a population
    of one: outputs, final state and the module's weight gradients equal `nn.LSTM`'s or
    `nn.GRU`'s, two layers deep; a single step stays with torch's cell op."""
    torch.manual_seed(4)
    rnn = cell(5, 20, 2)
    x, state = torch.randn(9, 6, 5), torch.randn(channels, 2, 6, 20)
    calls: list[int] = []
    real = getattr(networks, loops)
    monkeypatch.setattr(networks, loops, lambda *a: calls.append(a[0].shape[1]) or real(*a))

    def run(native_on: bool, steps: torch.Tensor) -> list[torch.Tensor]:
        rnn.zero_grad()
        with monkeypatch.context() as m:
            if not native_on:
                m.setattr(native, "library", lambda: None)
            out, new = networks.run_rnn(rnn, steps, state)
        (out.square().sum() + new.sum()).backward()
        return [out, new, *(p.grad.clone() for p in rnn.parameters())]

    for got, want in zip(run(True, x), run(False, x), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert calls == [9, 9]  # both layers, the whole sequence each
    run(True, x)
    grads = {p.grad.data_ptr() for p in rnn.parameters()}
    assert len(grads) == 8  # no two share memory: in-place clipping would scale one twice
    run(True, x[:1])
    assert calls == [9, 9, 9, 9]


@pytest.mark.parametrize("native_on", [pytest.param(True, marks=pytest.mark.skipif(
    native.library() is None, reason="no C compiler")), False])
def test_gru_layer_runs_the_c_loops_where_built_else_the_stacked_cells(monkeypatch, native_on):
    if not native_on:
        monkeypatch.setattr(native, "library", lambda: None)
    gen = torch.Generator().manual_seed(3)
    p, length, batch, width, hidden = 3, 4, 2, 5, 6
    args = [torch.randn(s, generator=gen) for s in
            [(p, length, batch, width), (p, batch, hidden), (p, 3 * hidden, width),
             (p, 3 * hidden, hidden), (p, 3 * hidden), (p, 3 * hidden)]]
    want = (gru_native if native_on else gru_stacked)(*args)
    for got, expected in zip(gru_layer(*args), want, strict=True):
        assert torch.equal(got, expected)


@NEEDS_CC
def test_a_library_others_could_write_is_not_loaded(fresh, monkeypatch):
    monkeypatch.setenv("CC", CC)
    said: list[str] = []
    monkeypatch.setattr(native.LOG, "warning", lambda msg, *args: said.append(msg % args))
    path = native._built()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o777)
    assert native.library() is None
    assert len(said) == 1 and "writable by others" in said[0]


@pytest.mark.skipif(native.library() is None, reason="no C compiler: the native loops are off")
@pytest.mark.parametrize("wrong", ["h batch", "c hidden", "w_ih gates", "float64 h"])
def test_mismatched_shapes_or_dtypes_are_refused_before_the_c_loops(wrong):
    p, length, batch, width, hidden = 2, 3, 4, 5, 6
    x, h, c = torch.zeros(p, length, batch, width), torch.zeros(p, batch, hidden), \
        torch.zeros(p, batch, hidden)
    weights = [torch.zeros(p, 4 * hidden, width), torch.zeros(p, 4 * hidden, hidden),
               torch.zeros(p, 4 * hidden), torch.zeros(p, 4 * hidden)]
    if wrong == "h batch":
        h = torch.zeros(p, batch + 1, hidden)
    elif wrong == "c hidden":
        c = torch.zeros(p, batch, hidden - 1)
    elif wrong == "w_ih gates":
        weights[0] = torch.zeros(p, 4 * hidden - 4, width)
    else:
        h = h.double()
    with pytest.raises(ValueError, match="lstm_native"):
        lstm_native(x, h, c, *weights)
    with pytest.raises(ValueError, match="lstm_native_step"):
        lstm_native_step(x[:, 0], h, c, StepWeights.lstm(*weights))


@pytest.mark.skipif(native.library() is None, reason="no C compiler: the native loops are off")
@pytest.mark.parametrize(("hidden", "batch"), [(7, 4), (20, 6), (70, 5)])
def test_a_step_on_prepared_weights_equals_nn_lstm(hidden, batch):
    """`lstm_native_step` (collection's and evaluation's single steps of a stack) equals each
    member's `nn.LSTM` step; the sizes take the C loops' blocks and edges."""
    torch.manual_seed(hidden)
    members, width = 3, 5
    rnns = [torch.nn.LSTM(width, hidden) for _ in range(members)]
    x, h, c = torch.randn(members, batch, width), torch.randn(members, batch, hidden), \
        torch.randn(members, batch, hidden)
    weights = StepWeights.lstm(*(torch.stack([getattr(r, f"{kind}_l0").detach() for r in rnns])
                               for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
    with torch.inference_mode():
        got_h, got_c = lstm_native_step(x, h, c, weights)
        for p, rnn in enumerate(rnns):
            _, (want_h, want_c) = rnn(x[p][None], (h[p][None], c[p][None]))
            torch.testing.assert_close(got_h[p], want_h[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(got_c[p], want_c[0], atol=1e-5, rtol=0)


@pytest.mark.skipif(native.library() is None, reason="no C compiler: the native loops are off")
@pytest.mark.parametrize(("hidden", "batch"), [(7, 4), (20, 6), (70, 5)])
def test_a_gru_step_on_prepared_weights_equals_nn_gru(hidden, batch):
    torch.manual_seed(hidden)
    members, width = 3, 5
    rnns = [torch.nn.GRU(width, hidden) for _ in range(members)]
    x, h = torch.randn(members, batch, width), torch.randn(members, batch, hidden)
    weights = StepWeights.gru(*(torch.stack([getattr(r, f"{kind}_l0").detach() for r in rnns])
                               for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
    with torch.inference_mode():
        got = gru_native_step(x, h, weights)
        for p, rnn in enumerate(rnns):
            _, want = rnn(x[p][None], h[p][None])
            torch.testing.assert_close(got[p], want[0], atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="gru_native_step"):
            gru_native_step(x, h[:, :-1], weights)


@pytest.mark.skipif(native.library() is None, reason="no C compiler: the native loops are off")
def test_a_stacks_steps_prepare_the_weights_once_and_again_after_an_update(monkeypatch):
    """A stack's single steps without gradients run in C on weights prepared once; an update
    of the parameters by the stack's own Adam (whose fused kernel does not bump the version
    counter by itself) makes the next step prepare them again, so a step never acts on stale
    weights."""
    import numpy as np
    from gymnasium import spaces

    from evopop.agents import Agent, NetSpec, PPOParams
    from evopop.batched import network, stack
    from evopop.batched.cells import lstm_stacked

    made: list[int] = []
    prepare = StepWeights.lstm
    monkeypatch.setattr(network.StepWeights, "lstm", lambda *w: made.append(1) or prepare(*w))
    box = spaces.Box(-1.0, 1.0, (3,))
    agents = [Agent(box, box, NetSpec(hidden_size=8, head=(8,), shared_encoder=True),
                    PPOParams(), seed=s) for s in range(2)]
    pop = stack(agents)
    net = pop.net
    obs = torch.randn(2, 1, 4, 3)
    state = torch.randn(net.initial_state(4).shape)

    def stacked() -> torch.Tensor:
        w = [net.params[f"rnn_actor.{kind}_l0"].detach()
             for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        return lstm_stacked(obs, state[0, 0], state[1, 0], *w)[0]

    for _ in range(3):
        with torch.inference_mode():
            feat, _ = net._encode(("rnn_actor",), obs, state)
        torch.testing.assert_close(feat, stacked(), atol=1e-5, rtol=0)
    assert len(made) == 1
    before = stacked()
    pop.adam.step(net.flat, torch.ones_like(net.flat), np.full(2, 0.05), np.ones(2, bool))
    assert not torch.allclose(stacked(), before)  # the update moved the layer's output
    with torch.inference_mode():
        feat, _ = net._encode(("rnn_actor",), obs, state)
    assert len(made) == 2
    torch.testing.assert_close(feat, stacked(), atol=1e-5, rtol=0)
