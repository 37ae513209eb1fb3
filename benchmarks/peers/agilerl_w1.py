"""W1 peer: AgileRL's recurrent-PPO tutorial, run in AgileRL's own venv (benchmarks/setup_peers.sh).

Usage: benchmarks/.peers/agilerl-venv/bin/python benchmarks/peers/agilerl_w1.py [--steps 60000]

Follows "Partially Observable Pendulum-v1 with Recurrent PPO"
(https://docs.agilerl.com/en/latest/tutorials/gymnasium/agilerl_recurrent_ppo_tutorial.html,
docs/tutorials/gymnasium/agilerl_recurrent_ppo_tutorial.rst in AgileRL/AgileRL) setting for
setting: Pendulum-v1 with the angular velocity masked, 16 sync envs, a population of 4 PPO agents
with RSNorm (LSTM 64, head [128], shared encoders, chunked BPTT of 16 steps), learn_step 1024 x 16
envs, batch 256, 4 epochs, gamma 0.9, lr 1e-3, tournament of 2 with elitism, the tutorial's
mutation probabilities, trained by `train_on_policy` with evo_steps 10k and eval_loop 3 (3
episodes on each of the 16 envs: 48). Only `max_steps` (env steps per member, `--steps`)
differs from the tutorial's 1M.
The last line printed is JSON: population env steps done (training rollouts, as evopop counts
them), wall seconds from the script's start (imports included) and of `train_on_policy` alone,
and the env-steps/s of both.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from agilerl.algorithms import PPO  # noqa: E402
from agilerl.algorithms.core.registry import HyperparameterConfig, RLParameter  # noqa: E402
from agilerl.hpo.mutation import Mutations  # noqa: E402
from agilerl.hpo.tournament import TournamentSelection  # noqa: E402
from agilerl.rollouts.on_policy import collect_rollouts_recurrent  # noqa: E402
from agilerl.training.train_on_policy import train_on_policy  # noqa: E402
from agilerl.typing import BPTTSequenceType  # noqa: E402
from agilerl.utils.utils import make_vect_envs  # noqa: E402
from agilerl.wrappers.agent import RSNorm  # noqa: E402

NUM_ENVS = 16
POPULATION_SIZE = 4
EVO_STEPS = 10_000
EVAL_LOOP = 3
INIT_HP = {
    "batch_size": 256, "lr": 0.001, "learn_step": 1024 * NUM_ENVS, "gamma": 0.9,
    "gae_lambda": 0.95, "action_std_init": 0.6, "clip_coef": 0.2, "ent_coef": 0.0,
    "vf_coef": 0.5, "max_grad_norm": 0.5, "share_encoders": True, "recurrent": True,
    "target_kl": None, "update_epochs": 4, "bptt_sequence_type": BPTTSequenceType.CHUNKED,
    "max_seq_len": 16, "num_envs": NUM_ENVS,
}


class MaskVelocityWrapper(gym.ObservationWrapper):
    """Pendulum-v1 with its angular velocity (observation index 2) zeroed: a POMDP."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.mask = np.ones_like(env.observation_space.sample())
        self.mask[2] = 0.0

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self.mask


def make_env() -> gym.Env:
    return MaskVelocityWrapper(gym.make("Pendulum-v1"))


def make_population(env: gym.vector.VectorEnv, device: str) -> list[Any]:
    """The tutorial's population: its network, mutable hyperparameter ranges and INIT_HP."""
    net_config = {
        "latent_dim": 64,
        "encoder_config": {"hidden_state_size": 64, "num_layers": 1},
        "head_config": {"hidden_size": [128]},
    }
    hp_config = HyperparameterConfig(
        lr=RLParameter(min=1e-4, max=1e-2),
        batch_size=RLParameter(min=128, max=1024),
        ent_coef=RLParameter(min=0.0001, max=0.001, grow_factor=1.0, shrink_factor=0.9),
    )
    return PPO.population(
        size=POPULATION_SIZE, observation_space=env.single_observation_space,
        action_space=env.single_action_space, net_config=net_config, hp_config=hp_config,
        device=device, wrapper_cls=RSNorm, **INIT_HP)


class StepCounter:
    """`collect_rollouts_recurrent` that counts the training env steps it collects."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.env_steps = 0

    def __call__(self, agent: Any, env: Any, n_steps: int | None = None, **kwargs: Any) -> Any:
        result = collect_rollouts_recurrent(agent, env, n_steps=n_steps, **kwargs)
        self.env_steps += n_steps * self.num_envs
        return result


def train(steps_per_member: int, elite_path: Path) -> tuple[int, float]:
    """Runs the tutorial's `train_on_policy`; returns (population env steps, its wall seconds)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = make_vect_envs(make_env=make_env, num_envs=NUM_ENVS, should_async_vector=False)
    pop = make_population(env, device)
    tournament = TournamentSelection(tournament_size=2, elitism=True,
                                     population_size=POPULATION_SIZE)
    mutations = Mutations(no_mutation=0.4, architecture=0.2, new_layer_prob=0.2,
                          parameters=0.2, activation=0.0, rl_hp=0.2, mutation_sd=0.1,
                          rand_seed=42, device=device)
    counter = StepCounter(NUM_ENVS)
    start = time.perf_counter()
    train_on_policy(
        env=env, env_name="PendulumNoVel-v1", algo="PPO", pop=pop, init_hp=INIT_HP,
        max_steps=steps_per_member, evo_steps=EVO_STEPS, eval_steps=None, eval_loop=EVAL_LOOP,
        selection_strategy=tournament, mutation=mutations, wb=False, save_elite=True,
        elite_path=str(elite_path), collect_rollouts_fn=counter)
    return counter.env_steps, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60_000,
                        help="env steps per member (the tutorial's max_steps)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env_steps, train_s = train(args.steps, Path(tmp) / "PPO_trained_agent.pt")
    wall_s = time.perf_counter() - START
    print(json.dumps({
        "program": "agilerl",
        "version": importlib.metadata.version("agilerl"),
        "steps_per_member": args.steps,
        "env_steps": env_steps,
        "wall_s": round(wall_s, 3),
        "train_s": round(train_s, 3),
        "env_steps_per_s": round(env_steps / wall_s, 1),
        "train_env_steps_per_s": round(env_steps / train_s, 1),
    }))


if __name__ == "__main__":
    main()
