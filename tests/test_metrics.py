"""Env-reported episode metrics reach rollouts, evaluations and their means."""

import math
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from evopop.agents.evaluation import evaluate
from evopop.envs import make_env
from evopop.envs.metrics import EPISODE_METRICS_KEY, final_metrics, mean_metrics
from evopop.evolution.tracking import generation_point
from evopop.evolution.wandb_tracker import WandbTracker
from evopop.records import GenerationRecord, MemberRecord
from evopop.rollouts.collect import Collector, collect
from evopop.seeding import torch_generator


class ReportsLength(gym.Wrapper):
    """Reports the episode length, and 'odd_length' only for odd-length episodes."""

    def reset(self, **kwargs):
        self.steps = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self.steps += 1
        if term or trunc:
            odd = float(self.steps) if self.steps % 2 else math.nan
            info[EPISODE_METRICS_KEY] = {"length": float(self.steps), "odd_length": odd}
        return obs, reward, term, trunc, info


def _envs(n=3):
    return SyncVectorEnv([lambda: ReportsLength(make_env("CartPoleNoVel-v1"))] * n,
                         autoreset_mode=AutoresetMode.SAME_STEP)


def test_final_metrics_respect_the_per_key_masks_of_batched_infos():
    """Two envs end on the same step reporting different keys: each keeps only its own."""
    infos: dict = {}
    envs = SyncVectorEnv([lambda: make_env("CartPoleNoVel-v1")] * 2)
    for i, metrics in enumerate([{"a": 1.5}, {"b": 2.5}]):
        infos = envs._add_info(infos, {"final_info": {EPISODE_METRICS_KEY: metrics}}, i)
    envs.close()
    assert final_metrics(infos, 0) == {"a": 1.5}
    assert final_metrics(infos, 1) == {"b": 2.5}
    assert final_metrics({}, 0) is None


def test_mean_skips_metrics_that_do_not_apply():
    means = mean_metrics([{"a": 1.0, "b": math.nan}, {"a": 3.0, "b": 4.0}, {"a": 2.0}])
    assert means == {"a": 2.0, "b": 4.0}
    assert mean_metrics([{"b": math.nan}]) == {"b": None}


def test_collection_records_each_finished_episodes_metrics(make_agent):
    envs = _envs()
    agent = make_agent(envs)
    col = Collector.start(agent, envs, seed=0)
    collect(agent, col, 100, torch_generator(0))
    log = col.pop_episodes()
    assert len(log.returns) >= 3 and len(log.metrics) == len(log.lengths)
    assert [m["length"] for m in log.metrics] == log.lengths
    for m, length in zip(log.metrics, log.lengths, strict=True):
        assert (m["odd_length"] == length) if length % 2 else math.isnan(m["odd_length"])
    assert col.pop_episodes().metrics == []


@pytest.mark.parametrize("vector", [True, False])
def test_evaluation_returns_metrics_in_episode_order(make_agent, vector):
    envs = _envs(2)
    agent = make_agent(envs)
    env = envs if vector else envs.envs[0]
    result = evaluate(agent, env, 5, seed=3)
    assert [m["length"] for m in result.metrics] == result.lengths.tolist()
    assert np.all(result.lengths > 0)


def test_wandb_gets_the_elites_episode_metrics_without_nones(tmp_path, monkeypatch):
    points = []

    class Run:
        def log(self, point, step):
            points.append((point, step))

    stub = type(sys)("wandb")
    stub.init = lambda **kwargs: Run()
    monkeypatch.setitem(sys.modules, "wandb", stub)
    member = MemberRecord(id=0, parent_id=None, fitness=1.0, eval_returns=(1.0,),
                          train_return=None, finite=True, env_steps=10, hparams={"lr": 0.1},
                          spec={}, mutation=None)
    record = GenerationRecord(generation=0, total_env_steps=10, wall_s=2.0, steps_per_s=5.0,
                              best_fitness=1.0, elite_fitness=1.0, members=(member,),
                              elite_metrics={"alive": 1.0, "failed_orbits_completed": None})
    WandbTracker(tmp_path, {}, "run").write(generation_point(record, ("lr",)))
    (point, step), = points
    assert step == 10 and point["elite/alive"] == 1.0
    assert "elite/failed_orbits_completed" not in point
