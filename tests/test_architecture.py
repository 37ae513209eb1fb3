"""The layers of the README's Architecture section, enforced: import-linter's contracts in
pyproject.toml (each layer imports only the layers below it; no cycles between siblings)."""

import os
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=os.fspath(ROOT / "pyproject.toml"), no_cache=True,
                        no_logo=True) == 0


def test_readme_names_every_layer() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Architecture"):]
    for package in ("cli", "sweep", "training", "config", "evolution", "rollouts", "batched",
                    "agents", "envs", "wrappers", "execution", "records", "rundir"):
        assert f"evopop.{package}" in section or f"evopop/{package}" in section, package
