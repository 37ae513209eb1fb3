"""Env-step timeouts: an env copy that hangs (in a step or in a reset) is killed and replaced and
the rollout completes, with independent stepping (its env worker is replaced) and with async
lockstep stepping (the copy's process is replaced and the step reported as truncated); the
event is logged and counted in the member's metrics."""

import logging
import re
import textwrap
import time

import numpy as np
import pytest

from evopop import training
from evopop.config import parse_config
from evopop.envs import EnvSpec, make_vec_env
from evopop.rollouts import VectorRollouts, make_rollout_envs
from evopop.rollouts.lockstep import TimedVectorEnv
from evopop.rollouts.timeouts import StepTimeouts
from evopop.rundir import RunDir

HANG_ENV = '''
import os, time
import gymnasium as gym

class Hang(gym.Wrapper):
    """CartPole that hangs once (the first process to reach it): at step `at`, in its first
    reset (`in_reset`), in its `reset_at`-th reset (autoresets included) or in its
    `seeded_at`-th seeded reset."""

    def __init__(self, marker, at=-1, in_reset=False, reset_at=0, seeded_at=0):
        super().__init__(gym.make("CartPole-v1"))
        self.marker, self.at, self.in_reset, self.steps = marker, at, in_reset, 0
        self.reset_at, self.seeded_at, self.resets, self.seeded = reset_at, seeded_at, 0, 0

    def _maybe_hang(self):
        try:  # atomic: copies in lockstep reach it together, and only one may hang
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        time.sleep(3600)

    def reset(self, **kwargs):
        self.resets += 1
        self.seeded += kwargs.get("seed") is not None
        if self.in_reset or self.resets == self.reset_at or self.seeded == self.seeded_at:
            self._maybe_hang()
        return self.env.reset(**kwargs)

    def step(self, action):
        self.steps += 1
        if self.steps == self.at:
            self._maybe_hang()
        return self.env.step(action)

gym.register("HangOnce-v0", entry_point=Hang)
'''


@pytest.fixture
def rollout_warnings(monkeypatch):
    """Warnings of the `evopop.rollouts` logger, caught by a handler of its own (so that no
    other test's logging set-up can hide them)."""
    logger, records = logging.getLogger("evopop.rollouts"), []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    monkeypatch.setattr(logger, "disabled", False)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.fixture
def hang_module(tmp_path, monkeypatch):
    (tmp_path / "hang_env.py").write_text(textwrap.dedent(HANG_ENV))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("where", ["step", "reset"])
def test_a_hung_env_is_replaced_and_the_rollout_completes(hang_module, make_agent, where):
    marker = str(hang_module / f"hung-{where}")
    kwargs = {"marker": marker, "at": 30} if where == "step" else {"marker": marker,
                                                                    "in_reset": True}
    spec = EnvSpec(id="hang_env:HangOnce-v0", num_envs=2, vectorization="independent",
                   env_workers=2, kwargs=kwargs, step_timeout_s=0.05, reset_timeout_s=15.0)
    envs = make_rollout_envs(spec)
    try:
        agent = make_agent(envs, learn_step=64, max_seq_len=8, batch_size=64)
        envs.start(0, 1)
        started = time.monotonic()
        buf = envs.collect(agent, 64)
        assert time.monotonic() - started < 60
        assert buf.obs.shape[:2] == (64, 2) and np.isfinite(buf.rewards).all()
        assert envs.timed_out == 1 and envs.restarts == 1
    finally:
        envs.close(abort=True)


def test_without_a_timeout_there_is_no_deadline():
    assert StepTimeouts().budget(100, resets=True) is None
    assert StepTimeouts(0.1).budget(100, resets=True) == pytest.approx(70.0)
    assert StepTimeouts(0.1, 2.0).budget(100, resets=True) == pytest.approx(12.0)
    assert StepTimeouts(0.1, 2.0).budget(100, resets=False) == pytest.approx(10.0)


def _async(hang_module, name: str, **kwargs) -> EnvSpec:
    return EnvSpec(id="hang_env:HangOnce-v0", num_envs=2, vectorization="async",
                   kwargs={"marker": str(hang_module / name), **kwargs}, step_timeout_s=2.0,
                   reset_timeout_s=10.0)


def _collect(envs, make_agent, steps=64, seed=0):
    agent = make_agent(envs, learn_step=steps, max_seq_len=8, batch_size=64)
    envs.start(seed, 1)
    return envs.collect(agent, steps)


def test_timed_async_steps_exactly_as_gymnasium_s_async(hang_module, make_agent):
    """Nothing hangs: the same transitions (autoresets and final observations included)."""
    spec = _async(hang_module, "never")
    timed, plain = make_rollout_envs(spec), VectorRollouts(make_vec_env(spec))
    try:
        assert isinstance(timed.envs, TimedVectorEnv)
        ours, theirs = _collect(timed, make_agent), _collect(plain, make_agent)
        assert ours.terminated.any()  # episodes ended inside the rollout
        for name in ("obs", "actions", "rewards", "terminated", "truncated", "values",
                     "bootstrap_values", "last_values"):
            np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))
    finally:
        timed.close()
        plain.close()


HANGS = {"step": {"at": 30}, "autoreset": {"reset_at": 2}, "reset": {"seeded_at": 2}}


@pytest.mark.parametrize("where", list(HANGS))
def test_a_hung_async_copy_is_replaced_and_the_step_truncated(hang_module, make_agent,
                                                               rollout_warnings, where):
    """In step 30, in the reset that ends the first episode (inside a step: the step deadline)
    or in the second seeded reset (the reset deadline)."""
    envs = make_rollout_envs(_async(hang_module, where, **HANGS[where]))
    try:
        if where == "reset":  # warm copies first; the next start's reset hangs in one of them
            _collect(envs, make_agent)
        started = time.monotonic()
        buf = _collect(envs, make_agent, seed=7)
        assert time.monotonic() - started < 45
        assert buf.obs.shape[:2] == (64, 2) and np.isfinite(buf.rewards).all()
        assert envs.timed_out == 1 and envs.envs.restarts == 1
        assert len(rollout_warnings) == 1  # logged once, naming the copy
        assert re.fullmatch(r"env copy [01] missed its deadline .*: replacing it",
                            rollout_warnings[0].getMessage())
        if where == "step":  # step 30 of one copy hung: reported truncated, reward 0
            hung = np.flatnonzero(buf.truncated[29])
            assert len(hung) == 1 and buf.rewards[29, hung[0]] == 0.0
            assert buf.episode_start[30, hung[0]] and not buf.terminated[29, hung[0]]
    finally:
        envs.close()


def test_a_run_counts_the_timeout_in_its_metrics(hang_module, tmp_path):
    config = parse_config({
        "env": {"id": "hang_env:HangOnce-v0", "num_envs": 2, "vectorization": "async",
                "kwargs": {"marker": str(hang_module / "hung-run"), "at": 20},
                "step_timeout_s": 5.0, "reset_timeout_s": 30.0},  # margins for a busy machine
        "net": {"hidden_size": 8, "head": [8]},
        "ppo": {"learn_step": 32, "batch_size": 64, "update_epochs": 1},
        "max_steps": 64, "eval_episodes": 1, "backend": "local"})
    training.run_training(config, tmp_path / "run", progress=False, parallel_members=1)
    records = RunDir(tmp_path / "run").generations()
    assert [m.env_timeouts for line in records for m in line.members] == [1]  # one gen, one agent
