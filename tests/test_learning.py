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
