"""Learning, proven on a memory task: CartPole with the velocities masked needs recurrence."""

from pathlib import Path

import pytest

from evopop.config import load_config
from evopop.training import run_training

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "single" / "cartpole_novel.yaml"


def test_recurrent_agent_solves_cartpole_novel_within_100k_steps(tmp_path):
    config = load_config(CONFIG, {"max_steps": 100_000, "seed": 0})
    summary = run_training(config, tmp_path, progress=False)
    assert summary.total_env_steps < 100_000 + config.population().evo_steps
    assert summary.elite_fitness >= 475  # the last generation's 10 deterministic episodes


@pytest.mark.slow
def test_feed_forward_agent_does_not_solve_it_with_the_same_budget(tmp_path):
    """The memory test is honest only if memory is needed."""
    config = load_config(CONFIG, {"max_steps": 100_000, "seed": 0, "net.cell": "none"})
    assert run_training(config, tmp_path, progress=False).elite_fitness < 300


RECALL = {
    "env": {"id": "evopop/DelayedRecallEasy-v0", "num_envs": 8},
    "net": {"cell": "lstm", "hidden_size": 32, "head": [32]},
    "ppo": {"lr": 3e-3, "learn_step": 32, "batch_size": 128, "update_epochs": 4,
            "max_seq_len": 8, "ent_coef": 0.01},
    "max_steps": 12_000, "eval_episodes": 32, "seed": 0,
}


@pytest.mark.parametrize("cell", ["lstm", "none"])
def test_only_a_recurrent_agent_recalls_a_bit_seen_two_steps_earlier(tmp_path, cell):
    """evopop/DelayedRecallEasy-v0: a bit shown once must be answered after a delay of 2;
    random play (and any memoryless policy) scores 0 on average, recall scores 1."""
    from evopop.config import parse_config

    config = parse_config({**RECALL, "net": {**RECALL["net"], "cell": cell}})
    best = run_training(config, tmp_path, progress=False).best_fitness
    assert best >= 0.9 if cell == "lstm" else best <= 0.5
