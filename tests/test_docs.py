"""Docs that are generated or promised stay true."""

import subprocess
import sys
from pathlib import Path

from evopop.config_reference import rows, with_reference

ROOT = Path(__file__).resolve().parents[1]


def test_readme_config_reference_is_generated_from_the_schema():
    readme = (ROOT / "README.md").read_text()
    regenerate = "python -m evopop.config_reference --write README.md"
    assert readme == with_reference(readme), f"run: {regenerate}"
    keys = [key for key, _, _ in rows()]
    assert "evolution.mutation.hp_space" in keys and "ppo.sde_sample_freq" in keys
    assert all(doc for _, _, doc in rows()), "every config key needs a description"


def test_import_evopop_is_light():
    """`import evopop` must not pull torch, gymnasium or matplotlib (each takes seconds)."""
    code = "import sys, evopop; print(sorted(m for m in ('torch', 'gymnasium', 'matplotlib') " \
           "if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_opens_with_setup_test_and_main_job_commands():
    head = (ROOT / "README.md").read_text()[:1500]
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = 'python -m pytest -m "not slow" -q'
    assert test_command in head and test_command in ci
    assert "pip install torch==2.13.0" in head and "install --quiet torch==2.13.0" in ci
    assert "evopop train configs/" in head


def test_at_most_eight_direct_core_dependencies():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert len(project["dependencies"]) <= 8
