"""Typed run records: exact JSON round trips, the schema version in every record, strict JSON
for diverged fitness, torn lines skipped and foreign or newer records refused in one line."""

import json
import math

import pytest

from evopop.errors import UserError
from evopop.records import (
    SCHEMA_VERSION,
    GenerationRecord,
    LineageRecord,
    MemberRecord,
    RecordError,
    RunSummary,
    SchemaVersionError,
)
from evopop.rundir import RunDir

MUTATION = {"kind": "hyperparameter", "detail": "lr", "old": 1e-3, "new": 1.2e-3}
ALIVE = MemberRecord(id=4, parent_id=1, fitness=12.5, eval_returns=(10.0, 15.0),
                     train_return=9.25, finite=True, env_steps=2048,
                     hparams={"lr": 1.2e-3, "batch_size": 64, "vf_clip": None},
                     spec={"cell": "lstm", "hidden_size": 16, "head": [16]}, mutation=MUTATION,
                     train_metrics={"alive": 1.0}, eval_metrics={"alive": None})
DIVERGED = MemberRecord(id=5, parent_id=None, fitness=-math.inf, eval_returns=(),
                        train_return=None, finite=False, env_steps=2048, hparams={"lr": 1.0},
                        spec={}, mutation=None)
GENERATION = GenerationRecord(generation=3, total_env_steps=8192, wall_s=12.345,
                              steps_per_s=700.5, best_fitness=13.0, elite_fitness=12.5,
                              members=(ALIVE, DIVERGED), elite_metrics={"alive": 1.0})
LINEAGE = LineageRecord(generation=3, id=4, parent_id=1, born=3, mutation=MUTATION)
SUMMARY = RunSummary(target_reached=True, best_fitness=13.0, elite_fitness=12.5, generations=4,
                     total_env_steps=8192, wall_s=12.345, elite_sha256="ab" * 32)
RECORDS = [GENERATION, LINEAGE, SUMMARY]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_round_trip_is_exact_through_strict_json(record):
    text = json.dumps(record.to_json(), allow_nan=False)  # strict JSON: no -Infinity
    again = type(record).from_json(json.loads(text))
    assert again == record
    assert json.dumps(again.to_json(), allow_nan=False) == text


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_carries_the_schema_version(record):
    assert record.to_json()["schema_version"] == SCHEMA_VERSION


def test_diverged_fitness_is_null_and_reads_back_as_minus_inf():
    data = GENERATION.to_json()
    assert data["members"][1]["fitness"] is None
    assert "train_metrics" not in data["members"][1]  # only members of envs with metrics
    diverged = RunSummary(False, -math.inf, -math.inf, 1, 64, 1.0, None, diverged=True)
    assert diverged.to_json()["best_fitness"] is None
    assert RunSummary.from_json(diverged.to_json()).best_fitness == -math.inf


def test_a_record_from_before_schema_versions_reads_as_version_1():
    legacy = {k: v for k, v in LINEAGE.to_json().items() if k != "schema_version"}
    assert LineageRecord.from_json(legacy) == LINEAGE
    old_summary = {k: v for k, v in SUMMARY.to_json().items()
                   if k not in ("schema_version", "diverged")}
    assert RunSummary.from_json(old_summary) == SUMMARY


@pytest.mark.parametrize("cls", [GenerationRecord, LineageRecord, RunSummary])
def test_another_schema_version_is_refused_in_one_line(cls):
    record = next(r for r in RECORDS if isinstance(r, cls))
    with pytest.raises(SchemaVersionError, match="schema version 99; this evopop reads") as err:
        cls.from_json({**record.to_json(), "schema_version": 99})
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"generation": "3"}, "'generation' is not an integer"),
    ({"members": []}, "'members' is not a non-empty list"),
    ({"elite_fitness": "high"}, "'elite_fitness' is not a number or null"),
    ({"members": [{"id": 1}]}, "not a member record: 'parent_id' is missing"),
])
def test_a_malformed_record_is_a_one_line_record_error(change, message):
    with pytest.raises(RecordError, match=message) as err:
        GenerationRecord.from_json({**GENERATION.to_json(), **change})
    assert "\n" not in str(err.value)


def test_run_dir_appends_and_reads_logs_skipping_a_torn_last_line(tmp_path):
    run = RunDir(tmp_path)
    run.append_generation(GENERATION)
    run.append_lineage([LINEAGE, LINEAGE])
    with run.metrics.open("a") as log:
        log.write('{"schema_version": 1, "generation": 4, "tot')  # a kill mid-write
    assert run.generations() == [GENERATION]
    assert run.lineage_records() == [LINEAGE, LINEAGE]
    assert RunDir(tmp_path / "none").generations() == []  # not written yet


def test_run_dir_refuses_a_newer_log_naming_file_and_line(tmp_path):
    run = RunDir(tmp_path)
    run.append_generation(GENERATION)
    with run.metrics.open("a") as log:
        log.write(json.dumps({**GENERATION.to_json(), "schema_version": 2}) + "\n")
    with pytest.raises(SchemaVersionError, match=r"metrics\.jsonl line 2: a generation record"):
        run.generations()


def test_truncating_logs_keeps_earlier_generations_and_drops_torn_lines(tmp_path):
    run = RunDir(tmp_path)
    for g in range(4):
        run.append_generation(GenerationRecord(**{**vars(GENERATION), "generation": g}))
        run.append_lineage([LineageRecord(g, g, None, g, None)])
    with run.lineage.open("a") as log:
        log.write('{"generation": 4, "id"')
    run.truncate_logs(metrics_before=2, lineage_before=3)
    assert [r.generation for r in run.generations()] == [0, 1]
    assert [r.generation for r in run.lineage_records()] == [0, 1, 2]
    assert run.lineage.read_text().endswith("}\n")


def test_summary_is_written_atomically_and_read_back(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(UserError, match="has not finished"):
        run.read_summary()
    run.write_summary(SUMMARY)
    assert run.read_summary() == SUMMARY
    assert not list(tmp_path.glob(".summary.json.*"))  # no temp file left behind
    run.summary.write_text("{not json")
    with pytest.raises(RecordError, match="not valid JSON"):
        run.read_summary()
    run.summary.write_text(json.dumps({"seed": 0, "mean_return": 1.0}))
    with pytest.raises(RecordError, match=r"summary\.json: not a run summary"):
        run.read_summary()


def test_env_timeouts_are_written_only_when_they_happened_and_read_back():
    from evopop.records import MemberRecord

    base = dict(id=1, parent_id=None, fitness=1.0, eval_returns=(1.0,), train_return=None,
                finite=True, env_steps=64, hparams={}, spec={}, mutation=None)
    quiet, timed_out = MemberRecord(**base), MemberRecord(**base, env_timeouts=2)
    assert "env_timeouts" not in quiet.to_json()
    assert MemberRecord.from_json(quiet.to_json()).env_timeouts == 0
    assert timed_out.to_json()["env_timeouts"] == 2
    assert MemberRecord.from_json(timed_out.to_json()) == timed_out
