"""Shared helpers: one torch thread (as workers use) and small agent/env factories."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def make_agent():
    from evopop.agents import Agent, NetSpec, PPOParams

    def build(envs, seed=0, spec=None, **params):
        return Agent(envs.single_observation_space, envs.single_action_space,
                     spec or NetSpec(), PPOParams(**params), seed=seed)

    return build
