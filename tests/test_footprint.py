"""The up-front memory estimate: exact parameter counts; a run that cannot fit writes nothing."""

import gymnasium as gym
import pytest

from evopop.agents import Agent, NetSpec
from evopop.agents.networks import parameter_count
from evopop.agents.spaces import ActionSpec, ObsEncoder
from evopop.config import parse_config
from evopop.evolution.footprint import MemoryBudgetError
from evopop.training import run_training

SPECS = [NetSpec(cell="lstm", hidden_size=16, head=(32, 8)),
         NetSpec(cell="lstm", hidden_size=8, head=(8,), sde=True),
         NetSpec(cell="gru", hidden_size=8, num_layers=2, head=(16,), shared_encoder=True),
         NetSpec(cell="none", head=(24,))]
SPACES = [(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,))),
          (gym.spaces.Discrete(5), gym.spaces.Discrete(4))]


@pytest.mark.parametrize("spec", SPECS, ids=["lstm", "lstm-sde", "gru2-shared", "ff"])
@pytest.mark.parametrize(("obs", "act"), SPACES, ids=["box", "discrete"])
def test_network_floats_is_the_exact_parameter_count(spec, obs, act):
    agent = Agent(obs, act, spec)
    count = sum(p.numel() for p in agent.net.parameters())
    assert parameter_count(spec, ObsEncoder(obs).dim, ActionSpec.from_space(act)) == count


def test_a_run_that_cannot_fit_is_refused_before_anything_is_written(tmp_path):
    config = parse_config({"env": {"id": "CartPoleNoVel-v1", "num_envs": 4096},
                           "net": {"hidden_size": 4096, "head": [4096]},
                           "ppo": {"learn_step": 4096},
                           "evolution": {"population_size": 64}})
    with pytest.raises(MemoryBudgetError, match=r"needs about \d+\.\d GiB"):
        run_training(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
