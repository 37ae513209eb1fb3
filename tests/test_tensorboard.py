"""TensorBoard: a run's event files, read back, hold exactly what metrics.jsonl says (as
TensorBoard's float32 scalars), across resumes; wandb gets the same points; bad setups are one
line with exit code 2."""

import math
import subprocess
import sys

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

import evopop.training as runner
from evopop.cli import main
from evopop.config import ConfigError, load_config, parse_config
from evopop.evolution.space import DEFAULT_HP_SPACE
from evopop.evolution.tensorboard_tracker import TensorBoardTracker
from evopop.evolution.tracking import Point, generation_point
from evopop.records import GenerationRecord, MemberRecord
from evopop.rundir import RunDir

HP_NAMES = tuple(DEFAULT_HP_SPACE)
TINY = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 2},
    "net": {"cell": "gru", "hidden_size": 8, "head": [8]},
    "ppo": {"learn_step": 32, "batch_size": 32, "update_epochs": 1},
    "max_steps": 192,
    "eval_episodes": 2,
    "backend": "local",
    "evolution": {"population_size": 2, "tournament_size": 2, "evo_steps": 64,
                  "mutation": {"none": 0.5, "hyperparameter": 0.5}},
}  # 3 generations of 2 members


def _events(path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) per tag, as TensorBoard shows them (orphaned events purged)."""
    acc = EventAccumulator(str(path), size_guidance={SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(run_dir) -> dict[str, list[tuple[int, float]]]:
    """What every generation of metrics.jsonl charts, rounded to float32 as TensorBoard keeps
    it."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in RunDir(run_dir).generations():
        point = generation_point(record, HP_NAMES)
        for tag, value in point.scalars.items():
            expected.setdefault(tag, []).append((point.step, float(np.float32(value))))
    return expected


def _config_file(tmp_path, **changes):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def _member(id_: int, fitness: float, lr: float) -> MemberRecord:
    return MemberRecord(id=id_, parent_id=None, fitness=fitness, eval_returns=(fitness,),
                        train_return=None, finite=math.isfinite(fitness), env_steps=64,
                        hparams={"lr": lr, "batch_size": 32, "anneal": False}, spec={},
                        mutation=None)


def test_a_generation_charts_exactly_its_record():
    record = GenerationRecord(
        generation=4, total_env_steps=640, wall_s=3.0, steps_per_s=None, best_fitness=9.0,
        elite_fitness=7.0, members=(_member(8, 5.0, 0.1), _member(9, -math.inf, 0.2),
                                    _member(10, 7.0, 0.3), _member(11, 7.0, 0.4)),
        elite_metrics={"alive": 1.0, "failed_orbits": None})
    point = generation_point(record, ("lr", "batch_size", "gamma"))
    assert point.step == 640
    assert point.scalars == {
        "generation": 4.0, "elite_fitness": 7.0, "best_fitness": 9.0,
        "mean_fitness": 19.0 / 3, "diverged_members": 1.0,
        "member_0/fitness": 5.0, "member_0/lr": 0.1, "member_0/batch_size": 32.0,
        "member_1/lr": 0.2, "member_1/batch_size": 32.0,  # diverged: no fitness, a gap
        "member_2/fitness": 7.0, "member_2/lr": 0.3, "member_2/batch_size": 32.0,
        "member_3/fitness": 7.0, "member_3/lr": 0.4, "member_3/batch_size": 32.0,
        "elite_hp/lr": 0.3, "elite_hp/batch_size": 32.0,  # the first of the fittest
        "elite/alive": 1.0,
    }


def test_train_with_tensorboard_charts_every_generation_of_metrics_jsonl(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(_config_file(tmp_path)), "--run-dir", str(run), "--quiet",
                 "--tensorboard"]) == 0
    events, expected = _events(run / "tensorboard"), _expected(run)
    assert len(RunDir(run).generations()) == 3
    assert events == expected
    assert {"elite_fitness", "mean_fitness", "steps_per_s", "member_1/fitness",
            "member_1/ent_coef", "elite_hp/lr", "elite_hp/update_epochs"} <= set(events)
    elites = [(r.total_env_steps, r.elite_fitness) for r in RunDir(run).generations()]
    assert events["elite_fitness"] == [(s, float(np.float32(f))) for s, f in elites]
    assert yaml.safe_load((run / "config.yaml").read_text())["tensorboard"] is True


def _stop_before_checkpoint(monkeypatch, generation: int) -> None:
    """The next run is killed after logging generation - 1 but before checkpointing it."""
    real_save = runner.save_state

    def save_or_stop(path, state):
        if state.generation == generation:
            raise KeyboardInterrupt
        real_save(path, state)

    monkeypatch.setattr(runner, "save_state", save_or_stop)


def test_a_resumed_run_continues_the_stream_without_the_unfinished_generation(
        tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = parse_config({**TINY, "tensorboard": True})
    _stop_before_checkpoint(monkeypatch, 2)  # generation 1 is logged, then lost
    with pytest.raises(KeyboardInterrupt):
        runner.run_training(config, run, progress=False)
    monkeypatch.undo()
    orphan_steps = [s for s, _ in _events(run / "tensorboard")["elite_fitness"]]
    assert len(orphan_steps) == 2  # generations 0 and 1 were charted
    runner.run_training(load_config(run / "config.yaml"), run, resume=True, progress=False)
    events = _events(run / "tensorboard")
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert events == _expected(run)  # each step once, generation 1 as it was re-run
    assert [s for s, _ in events["elite_fitness"]][:2] == orphan_steps


def test_tensorboard_turned_on_at_resume_charts_the_earlier_generations_too(tmp_path,
                                                                            monkeypatch):
    run = tmp_path / "run"
    _stop_before_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        runner.run_training(parse_config(TINY), run, progress=False)
    monkeypatch.undo()
    tb = tmp_path / "elsewhere"
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", str(run), "--quiet", "--tensorboard", "elsewhere"]) == 0
    assert not (run / "tensorboard").exists()
    events = _events(tb)
    assert events == _expected(run) and len(events["elite_fitness"]) == 3


def test_the_config_key_names_a_directory_relative_to_the_run_dir(tmp_path):
    run = tmp_path / "run"
    config = parse_config({**TINY, "tensorboard": "charts"})
    runner.run_training(config, run, progress=False)
    assert _events(run / "charts") == _expected(run)
    for bad in (1, "", None):
        with pytest.raises(ConfigError, match="tensorboard: expected true, false or a dir"):
            parse_config({**TINY, "tensorboard": bad})


def test_wandb_and_tensorboard_chart_the_same_points(tmp_path, monkeypatch):
    points = []

    class Run:
        def log(self, point, step):
            points.append((step, point))

        def finish(self):
            pass

    stub = type(sys)("wandb")
    stub.init = lambda **kwargs: Run()
    monkeypatch.setitem(sys.modules, "wandb", stub)
    run = tmp_path / "run"
    runner.run_training(parse_config({**TINY, "tensorboard": True}), run, progress=False,
                        wandb=True)
    from_wandb: dict[str, list[tuple[int, float]]] = {}
    for step, point in points:
        for tag, value in point.items():
            from_wandb.setdefault(tag, []).append((step, float(np.float32(value))))
    assert from_wandb == _events(run / "tensorboard") == _expected(run)


def test_a_tracker_writes_any_point_it_is_given(tmp_path):
    tracker = TensorBoardTracker(tmp_path, purge_step=0)
    tracker.write(Point(5, {"elite/alive": 0.5, "elite/orbits": 3.0}))
    tracker.write(Point(9, {"elite/alive": 1.0}))
    tracker.close()
    assert _events(tmp_path) == {"elite/alive": [(5, 0.5), (9, 1.0)], "elite/orbits": [(5, 3.0)]}


def _one_line_exit_2(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_without_the_package_it_is_one_line_and_nothing_is_written(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    run = tmp_path / "run"
    err = _one_line_exit_2(capsys, ["train", str(_config_file(tmp_path)), "--run-dir", str(run),
                                    "--quiet", "--tensorboard"])
    assert "pip install tensorboard" in err and not run.exists()


def test_a_fresh_run_does_not_mix_with_another_runs_events(tmp_path, capsys):
    config, shared = str(_config_file(tmp_path)), str(tmp_path / "shared")
    assert main(["train", config, "--run-dir", str(tmp_path / "a"), "--quiet",
                 "--tensorboard", shared]) == 0
    err = _one_line_exit_2(capsys, ["train", config, "--run-dir", str(tmp_path / "b"),
                                    "--quiet", "--tensorboard", shared])
    assert "already holds TensorBoard events" in err and not (tmp_path / "b").exists()
    assert main(["train", config, "--run-dir", str(tmp_path / "b"), "--quiet", "--overwrite",
                 "--tensorboard", shared, "--seed", "1"]) == 0
    assert _events(shared) == _expected(tmp_path / "b") != _expected(tmp_path / "a")


def test_a_flag_before_config_says_so(tmp_path, capsys):
    err = _one_line_exit_2(capsys, ["train", "--tensorboard", str(_config_file(tmp_path))])
    assert "put it after CONFIG" in err


def test_tensorboard_is_imported_only_when_asked_for(tmp_path):
    config = _config_file(tmp_path, max_steps=64)
    code = ("import sys; from evopop.config import load_config; "
            "from evopop.training import run_training; "
            f"run_training(load_config({str(config)!r}), {str(tmp_path / 'run')!r}, "
            "progress=False); print(sorted(m for m in sys.modules "
            "if m.startswith(('tensorboard', 'torch.utils.tensorboard'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert RunDir(tmp_path / "run").read_summary().generations == 1
