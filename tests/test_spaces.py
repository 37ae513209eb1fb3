"""Observation encoding, action conversion and hand-written distributions."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from evopop.agents import Agent, NetSpec
from evopop.agents.evaluation import evaluate
from evopop.agents.spaces import ActionSpec, ObsEncoder, PolicyHead, space_from_dict, space_to_dict
from evopop.seeding import torch_generator


def test_encoder_one_hot_and_flatten_for_nested_spaces():
    space = spaces.Dict({
        "pos": spaces.Box(-1, 1, (2,)),
        "mode": spaces.Discrete(3, start=1),
        "bits": spaces.Tuple((spaces.MultiDiscrete([2, 3]), spaces.MultiBinary(2))),
    })
    enc = ObsEncoder(space)
    assert enc.dim == 2 + 3 + 5 + 2
    obs = {"pos": np.array([[0.5, -0.5]]), "mode": np.array([3]),
           "bits": (np.array([[1, 2]]), np.array([[1, 0]]))}
    row = enc(obs)[0]
    # gymnasium orders Dict keys alphabetically: bits, mode, pos
    np.testing.assert_array_equal(row, [0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0.5, -0.5])
    np.testing.assert_array_equal(enc.continuous, [False] * 10 + [True] * 2)


def test_action_spec_clips_box_and_offsets_discrete():
    box = ActionSpec.from_space(spaces.Box(-2.0, 2.0, (1,)))
    np.testing.assert_array_equal(box.to_env(np.array([[3.0], [-0.5]])), [[2.0], [-0.5]])
    disc = ActionSpec.from_space(spaces.Discrete(4, start=-1))
    np.testing.assert_array_equal(disc.to_env(np.array([[0.0], [3.0]])), [-1, 2])
    multi = ActionSpec.from_space(spaces.MultiDiscrete([2, 5]))
    assert multi.logits_dim == 7 and multi.action_dim == 2
    np.testing.assert_array_equal(multi.to_env(np.array([[1.0, 4.0]])), [[1, 4]])


def test_gaussian_log_prob_and_entropy_match_torch_distributions():
    head = PolicyHead(ActionSpec.from_space(spaces.Box(-1, 1, (3,))))
    mean, log_std = torch.randn(5, 3, generator=torch_generator(0)), torch.tensor([0.1, -0.4, 0.7])
    actions = head.sample(mean, log_std, False, torch_generator(1))
    ref = torch.distributions.Normal(mean, log_std.exp())
    torch.testing.assert_close(head.log_prob(mean, log_std, actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(head.entropy(mean, log_std), ref.entropy().sum(-1))


def test_sde_log_prob_matches_its_gaussian_and_held_noise_is_reused():
    head = PolicyHead(ActionSpec.from_space(spaces.Box(-1, 1, (2,))), sde_features=3)
    gen = torch_generator(0)
    out = torch.randn(4, 5, generator=gen)  # mean [4, 2] then latent features [4, 3]
    log_std = torch.randn(3, 2, generator=gen) * 0.3
    mean, feat = out[:, :2], out[:, 2:]
    std = torch.sqrt(feat.pow(2) @ torch.exp(2 * log_std) + 1e-6)
    ref = torch.distributions.Normal(mean, std)
    noise = head.sde_noise(4, log_std, gen)
    actions = head.sample(out, log_std, False, gen, noise)
    torch.testing.assert_close(head.log_prob(out, log_std, actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(head.entropy(out, log_std), ref.entropy().sum(-1))
    torch.testing.assert_close(head.sample(out, log_std, False, gen, noise), actions)
    assert not torch.equal(head.sample(out, log_std, False, gen), actions)
    torch.testing.assert_close(head.sample(out, log_std, True, None), mean)


def test_multi_discrete_log_prob_and_entropy_match_torch_distributions():
    head = PolicyHead(ActionSpec.from_space(spaces.MultiDiscrete([3, 2])))
    logits = torch.randn(4, 5, generator=torch_generator(0))
    actions = head.sample(logits, None, False, torch_generator(1))
    a, b = torch.distributions.Categorical(logits=logits[:, :3]), \
        torch.distributions.Categorical(logits=logits[:, 3:])
    expected = a.log_prob(actions[:, 0].long()) + b.log_prob(actions[:, 1].long())
    torch.testing.assert_close(head.log_prob(logits, None, actions), expected)
    torch.testing.assert_close(head.entropy(logits, None), a.entropy() + b.entropy())


def test_gumbel_sampling_follows_the_categorical_probabilities():
    head = PolicyHead(ActionSpec.from_space(spaces.Discrete(3)))
    probs = torch.tensor([0.2, 0.5, 0.3])
    logits = probs.log().expand(40000, 3)
    picks = head.sample(logits, None, False, torch_generator(0))[:, 0].long()
    freq = torch.bincount(picks, minlength=3).float() / len(picks)
    assert torch.allclose(freq, probs, atol=0.01)
    assert (head.sample(logits[:2], None, True, None)[:, 0] == 1).all()


@pytest.mark.parametrize("space", [
    spaces.Box(-np.inf, np.inf, (2, 3)),
    spaces.Discrete(5, start=2),
    spaces.MultiDiscrete([2, 4]),
    spaces.Tuple((spaces.Discrete(2), spaces.Dict({"a": spaces.MultiBinary(3)}))),
])
def test_space_json_round_trip(space):
    assert space_from_dict(space_to_dict(space)) == space


def test_agent_acts_on_dict_observations_with_multidiscrete_actions():
    obs_space = spaces.Dict({"x": spaces.Box(-1, 1, (2,)), "k": spaces.Discrete(3)})
    agent = Agent(obs_space, spaces.MultiDiscrete([2, 3]), NetSpec(cell="gru", hidden_size=8))
    obs = {"x": np.zeros((4, 2), np.float32), "k": np.array([0, 1, 2, 0])}
    actions, state = agent.act(obs, agent.initial_state(4))
    assert actions.shape == (4, 2) and actions.dtype == np.int64
    assert state.shape == (2, 1, 4, 8)
    assert math.isfinite(float(state.sum()))


class _DictObsEnv(gym.Env):
    """Three-key Dict observations; an episode lasts 5 steps, reward 1 per step."""

    observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Discrete(3),
                                     "c": spaces.MultiBinary(2)})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), 1.0, self.t >= 5, False, {}


def test_evaluation_on_a_vector_env_of_dict_observations_counts_copies_not_keys():
    """Five copies of a three-key Dict env: every episode is played and scored."""
    envs = gym.vector.SyncVectorEnv([_DictObsEnv for _ in range(5)])
    agent = Agent(envs.single_observation_space, envs.single_action_space,
                  NetSpec(cell="gru", hidden_size=8))
    result = evaluate(agent, envs, 7, seed=1)
    assert result.returns.tolist() == [5.0] * 7 and result.lengths.tolist() == [5] * 7
