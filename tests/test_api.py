"""The public API: a handful of names from `evopop`, loaded lazily, enough for a custom loop."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import evopop

ROOT = Path(__file__).resolve().parents[1]


def test_import_evopop_is_light_and_every_public_name_resolves() -> None:
    code = "import sys, evopop; print('torch' in sys.modules, 'gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    for name in evopop.__all__:
        assert getattr(evopop, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        evopop.nope  # noqa: B018


def test_the_custom_loop_script_needs_at_most_five_evopop_names() -> None:
    tree = ast.parse((ROOT / "scripts" / "train_pendulum_novel.py").read_text())
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and (node.module or "").startswith("evopop") for alias in node.names]
    assert 1 <= len(names) <= 5 and set(names) <= set(evopop.__all__)


def test_population_steps_equal_the_training_loop(tmp_path) -> None:
    """Driving `Population` by hand gives the same elite as `run_training` on the same config."""
    config = evopop.load_config(ROOT / "configs" / "cartpole_novel.yaml", {
        "max_steps": 256, "env.num_envs": 2, "ppo.learn_step": 32, "ppo.batch_size": 64,
        "evolution.evo_steps": 64, "evolution.population_size": 3, "evolution.target": None,
        "eval_episodes": 2, "net.hidden_size": 8, "net.head": [8]})
    summary = evopop.run_training(config, tmp_path / "run", progress=False, parallel_members=1)
    with evopop.Population(config) as population:
        while True:
            population.train()
            if all(m.env_steps >= config.max_steps for m in population.members):
                break
            population.select()
            population.mutate()
        elite = population.elite.agent
    reference = evopop.load_agent(tmp_path / "run" / "elite.safetensors")
    for mine, theirs in zip(elite.net.parameters(), reference.net.parameters(), strict=True):
        assert mine.equal(theirs)
    assert summary.generations == population.generation + 1
