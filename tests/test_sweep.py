"""`evopop sweep`: grid x seeds planned and validated up front, ranked results, exact resume."""

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import evopop.sweep.run as sweep_run
from evopop.errors import UserError
from evopop.records import GenerationRecord, MemberRecord
from evopop.rundir import RunDir
from evopop.sweep import load_sweep, plan_sweep, rank_settings, run_sweep, steps_to_target
from evopop.sweep.spec import setting_slugs

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 2},
    "net": {"cell": "lstm", "hidden_size": 8, "head": [8]},
    "ppo": {"learn_step": 32, "batch_size": 64, "update_epochs": 1},
    "max_steps": 128,
    "eval_episodes": 1,
    "evolution": {"population_size": 2, "tournament_size": 2, "evo_steps": 64, "target": 30},
}
ARCH = "evolution.mutation.architecture"
SWEEP = {"base": "tiny.yaml", "grid": {ARCH: [0.0, 0.5]}, "seeds": [0, 1]}
COLUMNS = [ARCH, "seed", "target_reached", "best_fitness", "env_steps_to_target", "wall_s",
           "generations", "total_env_steps", "run_dir"]


def _write_sweep(folder: Path, sweep: dict, base: dict = TINY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(base))
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A finished tiny sweep (2 settings x 2 seeds) that tests copy before changing it."""
    folder = tmp_path_factory.mktemp("sweep")
    rows = run_sweep(_write_sweep(folder, SWEEP), folder / "out", parallel_runs=1, progress=False)
    return folder, rows


def _copy(finished: tuple[Path, list[dict]], tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "sweep"
    shutil.copytree(finished[0], folder)
    return folder / "sweep.yaml", folder / "out"


def _stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


def test_plan_expands_grid_times_seeds_into_validated_configs(tmp_path):
    sweep = {**SWEEP, "grid": {ARCH: [0.0, 0.5], "ppo.lr": [1e-3, 3e-4]}, "set": {"max_steps": 256}}
    plan = load_sweep(_write_sweep(tmp_path, sweep))
    assert plan.name == "sweep" and len(plan.runs) == 8
    first = plan.runs[0]
    assert first.name == "architecture=0.0_lr=0.001-seed0"
    assert [r.name for r in plan.runs[:2]] == [first.name, "architecture=0.0_lr=0.001-seed1"]
    last = plan.runs[-1].config
    assert last.evolution.mutation.architecture == 0.5 and last.ppo.lr == 3e-4
    assert last.seed == 1 and last.max_steps == 256 and first.config.max_steps == 256
    assert plan.label(plan.runs[-1].setting) == "architecture=0.5, lr=0.0003"
    inline = plan_sweep({**sweep, "base": TINY}, tmp_path / "elsewhere", "inline")
    assert [r.config for r in inline.runs] == [r.config for r in plan.runs]


def test_slugs_are_filesystem_safe_stable_and_unique():
    slugs = setting_slugs(["net.head", "ppo.lr"], [([64, 64], 1e-3), ([64], 1e-3)])
    # stable: the exact names, so a finished run keeps its directory across versions
    assert slugs == ["head=-64-64-_lr=0.001-7d1d9499", "head=-64-_lr=0.001-a0942c1e"]
    assert len(set(slugs)) == 2 and all(" " not in s and "[" not in s and "/" not in s
                                        for s in slugs)
    assert setting_slugs(["a.lr", "b.lr"], [(1, 2)]) == ["a.lr=1_b.lr=2"]  # clashing leaves


def test_bundled_sweep_lasts_long_enough_for_mutations_to_matter():
    """No target to stop early, at least 10 generations, 5 seeds for the statistics."""
    plan = load_sweep(REPO / "configs" / "sweep_mutations.yaml")
    assert len(plan.settings) == 4 and plan.seeds == (0, 1, 2, 3, 4) and len(plan.runs) == 20
    assert {r.config.env.id for r in plan.runs} == {"evopop/DelayedRecall-v0"}
    assert {r.config.evolution.target for r in plan.runs} == {None}
    assert {r.config.max_steps // r.config.evolution.evo_steps for r in plan.runs} == {20}


@pytest.mark.parametrize(("change", "fragment"), [
    ({"grid": {"evolution.mutation.architectur": [0.1]}},
     "grid key 'evolution.mutation.architectur' = 0.1: unknown config key "
     "'evolution.mutation.architectur'; did you mean 'architecture'?"),
    ({"grid": {"evolution.mutaton.architecture": [0.1]}},
     "grid key 'evolution.mutaton.architecture' = 0.1: unknown config key 'evolution.mutaton'; "
     "did you mean 'mutation'?"),
    ({"set": {"max_stpes": 64}}, "set key 'max_stpes': unknown config key 'max_stpes'; "
                                 "did you mean 'max_steps'?"),
    ({"grid": {ARCH: [0.0, 2.0]}}, "grid key 'evolution.mutation.architecture' = 2.0"),
    ({"grid": {ARCH: []}}, "'evolution.mutation.architecture' has no values"),
    ({"grid": {ARCH: 0.2}}, "must be a list of values"),
    ({"grid": {}}, "grid: must map at least one dotted config key"),
    ({"seeds": []}, "seeds: must be a non-empty list of integers"),
    ({"seeds": 3}, "seeds: must be a non-empty list of integers"),
    ({"seeds": [0, 1.5]}, "seeds: must be a non-empty list of integers"),
    ({"seeds": [0, "a"]}, "seeds: must be a non-empty list of integers"),
    ({"seeds": [1, 1]}, "seeds: has duplicates"),
    ({"base": None}, "missing 'base'"),
    ({"base": "nope.yaml"}, "base config not found"),
    ({"base": {"env": {"id": "CartPoleNoVel-v1"}}}, "has no evolution section"),
    ({"sets": {"max_steps": 64}}, "unknown sweep key 'sets'; did you mean 'set'?"),
    ({"set": {"seed": 3}}, "'seed' cannot be a grid or set key"),
    ({"set": {ARCH: 0.1}}, "is in both grid and set"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, change, fragment):
    sweep = {k: v for k, v in {**SWEEP, **change}.items() if v is not None}
    path = _write_sweep(tmp_path, sweep)
    with pytest.raises(UserError) as err:
        load_sweep(path)
    message = str(err.value)
    assert fragment in message and "\n" not in message
    assert message.startswith(str(path))


def test_a_bad_env_id_fails_before_any_run(tmp_path):
    base = {**TINY, "env": {"id": "CartPol-v1", "num_envs": 2}}
    with pytest.raises(UserError, match="CartPol-v1"):
        run_sweep(_write_sweep(tmp_path, SWEEP, base), tmp_path / "out", parallel_runs=1)
    assert not (tmp_path / "out" / "runs").exists()


def _generation(g: int, elite: float, steps: int) -> GenerationRecord:
    member = MemberRecord(id=0, parent_id=None, fitness=elite, eval_returns=(), train_return=None,
                          finite=math.isfinite(elite), env_steps=steps, hparams={}, spec={},
                          mutation=None)
    return GenerationRecord(generation=g, total_env_steps=steps, wall_s=1.5, steps_per_s=None,
                            best_fitness=elite, elite_fitness=elite, members=(member,))


def test_steps_to_target_from_a_handcrafted_metrics_file(tmp_path):
    lines = [_generation(0, 100.0, 1000), _generation(1, -math.inf, 2000),
             _generation(2, 480.0, 3000), _generation(3, 500.0, 4000)]
    run = RunDir(tmp_path)
    run.metrics.write_text("".join(json.dumps(x.to_json()) + "\n" for x in lines)
                           + '{"generation": 4, "eli')
    metrics = run.generations()
    assert metrics == lines  # the torn last line is skipped
    assert steps_to_target(metrics, 475) == 3000
    assert steps_to_target(metrics, 500) == 4000  # reaching the target exactly counts
    assert steps_to_target(metrics, 501) is None
    assert steps_to_target(metrics, None) is None


def _row(a, seed, best, steps):
    return {"a": a, "seed": seed, "best_fitness": best, "env_steps_to_target": steps,
            "target_reached": steps is not None}


def test_ranking_by_solved_fraction_then_steps_to_target_then_best_fitness():
    rows = [_row(0, 0, 15.0, None), _row(0, 1, 15.0, None),  # ties with 4: keeps first place
            _row(1, 0, 10.0, 100), _row(1, 1, 20.0, None),
            _row(2, 0, 15.0, 50), _row(2, 1, 15.0, 70),
            _row(3, 0, 30.0, 10), _row(3, 1, None, None),  # a diverged run ranks it last
            _row(4, 0, 15.0, None), _row(4, 1, 15.0, None),
            _row(5, 0, 40.0, None), _row(5, 1, 0.0, 20)]
    stats = rank_settings(rows, ["a"])
    # 2 solved both seeds; then half-solved settings by speed (3: 10, 5: 20, 1: 100 steps);
    # then the unsolved ones by best fitness, ties in order of appearance (0 before 4)
    assert [s.setting for s in stats] == [(2,), (3,), (5,), (1,), (0,), (4,)]
    two, three, five, one = stats[:4]
    assert (two.solved, two.best_std, two.steps_mean, two.steps_std) == (
        2, 0.0, 60.0, pytest.approx(math.sqrt(200)))
    assert three.best_mean == -math.inf and three.best == (30.0, -math.inf)  # a diverged run
    assert (five.best_mean, five.best_std) == (20.0, pytest.approx(math.sqrt(800)))
    assert (five.solved, five.steps_mean, five.steps_std) == (1, 20.0, 0.0)
    assert one.best_std == pytest.approx(math.sqrt(50)) and one.runs == 2
    assert stats[4].steps_mean is None and stats[4].solved == 0


def test_results_csv_summary_and_plot(finished):
    folder, rows = finished
    out = folder / "out"
    with (out / "results.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == COLUMNS and len(table) == 4
    assert [(r[ARCH], r["seed"]) for r in table] == [("0.0", "0"), ("0.0", "1"), ("0.5", "0"),
                                                    ("0.5", "1")]
    for row, line in zip(rows, table, strict=True):
        run_dir = out / line["run_dir"]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert float(line["best_fitness"]) == row["best_fitness"] == summary["best_fitness"]
        assert int(line["total_env_steps"]) == summary["total_env_steps"]
        expected = steps_to_target(RunDir(run_dir).generations(), 30)
        assert line["env_steps_to_target"] == ("" if expected is None else str(expected))
        assert (line["target_reached"] == "true") == summary["target_reached"]
    md = (out / "summary.md").read_text().splitlines()
    table_lines = [x for x in md if x.startswith("| ") and not x.startswith("| rank")]
    assert len(table_lines) == 2 and table_lines[0].startswith("| 1 |")
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert yaml.safe_load((out / "sweep.yaml").read_text())["base"]["max_steps"] == 128


def test_a_used_out_dir_needs_resume(finished, tmp_path):
    sweep, out = _copy(finished, tmp_path)
    with pytest.raises(UserError, match="--resume"):
        run_sweep(sweep, out, parallel_runs=1)


def test_resume_skips_finished_runs(finished, tmp_path, monkeypatch):
    sweep, out = _copy(finished, tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(sweep_run, "run_training", must_not_run)
    rows = run_sweep(sweep, out, parallel_runs=1, resume=True, progress=False)
    assert rows == finished[1]
    assert len(mtimes) == 4 and all(p.stat().st_mtime_ns == t for p, t in mtimes.items())


def test_resume_continues_checkpointed_runs_and_starts_missing_ones(finished, tmp_path,
                                                                      monkeypatch):
    sweep, out = _copy(finished, tmp_path)
    started, missing = (out / "runs" / finished[1][i]["run_dir"].split("/")[1] for i in (1, 2))
    old_sha = json.loads((started / "summary.json").read_text())["elite_sha256"]
    (started / "summary.json").unlink()
    shutil.rmtree(missing)
    calls = {}
    real = sweep_run.run_training

    def spy(config, run_dir, **kwargs):
        calls[run_dir.name] = kwargs["resume"]
        return real(config, run_dir, **kwargs)

    monkeypatch.setattr(sweep_run, "run_training", spy)
    rows = run_sweep(sweep, out, parallel_runs=1, resume=True, progress=False)
    assert calls == {started.name: True, missing.name: False}
    assert json.loads((started / "summary.json").read_text())["elite_sha256"] == old_sha
    assert _stable(rows) == _stable(finished[1])


def test_resume_refuses_a_changed_sweep(finished, tmp_path):
    sweep, out = _copy(finished, tmp_path)
    sweep.write_text(yaml.safe_dump({**SWEEP, "set": {"max_steps": 256}}))
    before = {name: (out / name).read_bytes() for name in ("sweep.yaml", "results.csv")}
    with pytest.raises(UserError, match="differs from the config"):
        run_sweep(sweep, out, parallel_runs=1, resume=True)
    assert {name: (out / name).read_bytes() for name in before} == before  # nothing rewritten


def test_script_runs_in_worker_processes_with_async_envs(tmp_path):
    """The Python-defined sweep, two runs at a time in spawned workers whose runs step
    subprocess (`async`) envs: workers must not be daemonic."""
    base = tmp_path / "tiny.yaml"
    base.write_text(yaml.safe_dump({**TINY, "env": {**TINY["env"], "vectorization": "async"}}))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sweep_mutations.py"), "--base", str(base),
         "--max-steps", "128", "--seeds", "0", "--parallel-runs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| 1 | " in done.stdout and "| 4 | " in done.stdout  # the ranked summary, 4 settings
    assert done.stderr.count("seed 0: best") == 4
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 4


def test_a_diverged_run_is_recorded_as_finished_and_unsolved(tmp_path, monkeypatch):
    import evopop.sweep.run as sweep_run
    from evopop.evolution.selection import PopulationDiverged

    def diverging(config, run_dir, **kwargs):
        run_dir.mkdir(parents=True)
        RunDir(run_dir).append_generation(_generation(0, -math.inf, 64))
        raise PopulationDiverged("every member's loss or weights became non-finite")

    monkeypatch.setattr(sweep_run, "run_training", diverging)
    summary = sweep_run.execute_run(None, tmp_path / "run", resume=False)
    assert summary.diverged and summary.best_fitness == -math.inf and summary.elite_sha256 is None
    assert (summary.generations, summary.total_env_steps, summary.wall_s) == (1, 64, 1.5)
    assert RunDir(tmp_path / "run").read_summary() == summary
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["best_fitness"] is None
    assert sweep_run.run_status(tmp_path / "run") is sweep_run.RunStatus.FINISHED
