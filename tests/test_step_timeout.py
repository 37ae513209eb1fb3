"""Env-step timeouts with independent stepping: an env copy that hangs (in a step or in a reset)
has its worker killed and replaced, the rollout completes, and the event is counted."""

import textwrap
import time

import numpy as np
import pytest

from evopop.envs import EnvSpec
from evopop.rollouts import make_rollout_envs

HANG_ENV = '''
import os, time
import gymnasium as gym

class Hang(gym.Wrapper):
    """CartPole that hangs once (the first process to reach it), at step `at` or in reset."""

    def __init__(self, marker, at=-1, in_reset=False):
        super().__init__(gym.make("CartPole-v1"))
        self.marker, self.at, self.in_reset, self.steps = marker, at, in_reset, 0

    def _maybe_hang(self):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            time.sleep(3600)

    def reset(self, **kwargs):
        if self.in_reset:
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
    from evopop.rollouts.workers import StepTimeouts

    assert StepTimeouts().budget(100, resets=True) is None
    assert StepTimeouts(0.1).budget(100, resets=True) == pytest.approx(70.0)
    assert StepTimeouts(0.1, 2.0).budget(100, resets=True) == pytest.approx(12.0)
    assert StepTimeouts(0.1, 2.0).budget(100, resets=False) == pytest.approx(10.0)
