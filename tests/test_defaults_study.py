"""The defaults study's bookkeeping: the configs it runs are a new user's, every task builds, a
resumed study skips exactly the finished runs, and the table tallies what it should."""

import importlib.util
import sys
from pathlib import Path

import pytest

from evopop.config import load_config
from evopop.envs import EnvSpec, make_env

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "defaults_study.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("defaults_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["defaults_study"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules["defaults_study"]


def test_the_suite_has_ten_tasks_that_all_build(study) -> None:
    assert len(study.SUITE) >= 10
    for task in study.SUITE:
        make_env(EnvSpec(**task.env_section())).close()


def test_evopop_arms_run_the_minimal_config_plus_one_change(study, tmp_path: Path) -> None:
    task = study.TASKS["PendulumNoisy0.1"]
    base = study.user_config(study.Job(task, study.Arm.EVOPOP, 2, 20_480))
    assert base == {"env": {"id": "Pendulum-v1", "wrappers": [{"noisy": {"sigma": 0.1}}]},
                    "evolution": {}, "max_steps": 20_480, "seed": 2,
                    "ppo": {"update_epochs": 4}}  # the default when the study began
    epochs = study.user_config(study.Job(task, study.Arm.EPOCHS_10, 2, 20_480))
    assert epochs == {**base, "ppo": {"update_epochs": 10}}
    path = tmp_path / "c.yaml"
    path.write_text(study.yaml.safe_dump(epochs))
    config = load_config(path)
    assert config.ppo.update_epochs == 10 and config.evolution.population_size == 4
    init = study.user_config(study.Job(task, study.Arm.RANDOM_INIT_HP, 2, 20_480))
    assert init["evolution"] == {"random_init_hp": True}
    fed = study.user_config(study.Job(task, study.Arm.PREV_ACTION_REWARD, 2, 20_480))
    assert fed["env"]["wrappers"] == [{"noisy": {"sigma": 0.1}}, "prev_action_reward"]
    assert task.env_section()["wrappers"] == [{"noisy": {"sigma": 0.1}}]  # the task's untouched


def test_a_resumed_study_skips_finished_runs_and_torn_lines(study, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    tasks = study.SUITE[:2]
    done = study.Result(tasks[0].name, "sb3", 0, 100, "crash", extra={"error": "TypeError: x"})
    study.append_result(results, done)
    study.append_result(results, study.Result(tasks[0].name, "sb3", 0, 100, "ok", 1.0))
    with results.open("a") as fh:
        fh.write('{"task": "torn')
    read = study.read_results(results)
    assert [(r.key, r.status) for r in read] == [(done.key, "crash")]
    arms = [study.Arm.EPOCHS_10, study.Arm.SB3, study.Arm.EVOPOP]
    jobs = study.plan(tasks, arms, [0, 1], 100, {done.key})
    assert len(jobs) == 2 * 3 * 2 - 1 and done.key not in {j.key for j in jobs}
    assert [(j.arm.value, j.seed) for j in jobs] == [
        ("sb3", 0), ("evopop", 0), ("evopop", 0), ("sb3", 1), ("sb3", 1), ("evopop", 1),
        ("evopop", 1), *[("evopop+epochs10", seed) for seed in (0, 0, 1, 1)]]


def test_random_play_is_seeded(study) -> None:
    job = study.Job(study.TASKS["CountEvents"], study.Arm.RANDOM, 0, 0)
    first, again = study.run_random(job), study.run_random(job)
    assert first.status == "ok" and len(first.returns) == study.FRESH_EPISODES
    assert first.returns == again.returns


def test_table_shows_crashes_and_tallies_wins(study) -> None:
    result = study.Result
    epochs = "evopop+epochs10"
    rows = [result("A", "sb3", 0, 10, "crash", extra={"error": "TypeError: bad"}),
            result("A", "evopop", 0, 10, "ok", 0.5), result("A", epochs, 0, 10, "ok", 0.7),
            result("B", "sb3", 0, 10, "ok", 1.0), result("B", "evopop", 0, 10, "ok", 2.0),
            result("B", "evopop", 1, 10, "ok", 4.0), result("B", epochs, 0, 10, "ok", 3.0)]
    tasks = [study.Task("A", "x"), study.Task("B", "y")]
    arms = [study.Arm.SB3, study.Arm.EVOPOP, study.Arm.EPOCHS_10]
    text = study.table(rows, tasks, arms, 10)
    assert "| A | 1 | crash (TypeError) | 0.5 ± 0 | 0.7 ± 0 |" in text
    assert "| B | 2 | 1 ± 0 (n=1) | 3 ± 1 | 3 ± 0 (n=1) |" in text
    # on the seeds both ran: B's epochs10 seed 0 (3.0) against evopop's seed 0 (2.0)
    assert "evopop+epochs10 vs evopop defaults: higher on 2, equal on 0, lower on 0" in text
    assert "- evopop vs sb3: higher on 2, equal on 0, lower on 0" in text
