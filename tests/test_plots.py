"""`evopop plot`: the lineage/trajectory data extracted from the logs, PNGs of real run dirs,
and one-line errors for directories that are not runs."""

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from evopop.config import parse_config
from evopop.errors import UserError
from evopop.evolution.mutation import MutationKind
from evopop.plots import (
    Change,
    Edge,
    build_lineage,
    load_metrics,
    mutation_label,
    plot_run,
    read_target,
)
from evopop.records import GenerationRecord, LineageRecord, RecordError
from evopop.rundir import RunDir
from evopop.training import run_training

TINY = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 2},
    "net": {"cell": "lstm", "hidden_size": 8, "head": [8]},
    "ppo": {"learn_step": 32, "batch_size": 64, "update_epochs": 1},
    "max_steps": 192,
    "seed": 0,
}
EVOLUTION = {"population_size": 3, "tournament_size": 2, "evo_steps": 64,
             "target": 450.0, "mutation": {"none": 0.2, "architecture": 0.2, "new_layer": 0.2,
                                           "parameters": 0.2, "hyperparameter": 0.2}}


def _member(mid, parent, fitness, lr=1e-3, hidden=16, head=(16,), mutation=None):
    return {"id": mid, "parent_id": parent, "fitness": fitness, "env_steps": 64,
            "eval_returns": [] if fitness is None else [fitness], "train_return": None,
            "finite": fitness is not None,
            "hparams": {"lr": lr, "batch_size": 64, "anneal": False, "vf_clip": None},
            "spec": {"cell": "lstm", "hidden_size": hidden, "head": list(head)},
            "mutation": mutation}


def _generation(g, elite, members):
    return {"generation": g, "total_env_steps": 192 * (g + 1), "wall_s": 1.0 + g,
            "steps_per_s": 100.0, "best_fitness": elite, "elite_fitness": elite,
            "members": members}


HP_LR = {"kind": "hyperparameter", "detail": "lr", "old": 1e-3, "new": 2e-3}
ARCH = {"kind": "architecture", "detail": "grow_hidden hidden_size", "old": 16, "new": 32}
SKIPPED = {"kind": "none", "detail": "new_layer skipped: head already has 1 layers"}
LAYER = {"kind": "new_layer", "detail": "head", "old": [16], "new": [16, 16]}
# three generations of three members: founders 0-2; the elite (id 1, then id 3) passes on in slot 0
# (JSON as a run before schema versions wrote it: no schema_version, which reads as version 1)
RECORDS = [
    _generation(0, 5.0, [_member(0, None, 1.0), _member(1, None, 5.0), _member(2, None, None)]),
    _generation(1, 7.0, [_member(1, None, 5.0), _member(3, 1, 7.0, lr=2e-3, mutation=HP_LR),
                         _member(4, 0, 2.0, hidden=32, mutation=ARCH)]),
    _generation(2, 9.0, [_member(3, 1, 9.0, lr=2e-3, mutation=HP_LR),
                         _member(5, 3, 9.0, lr=2e-3, mutation=SKIPPED),
                         _member(6, 4, 1.0, hidden=32, head=(16, 16), mutation=LAYER)]),
]
LINEAGE = [{"generation": 0, "id": i, "parent_id": None, "born": 0, "mutation": None}
           for i in range(3)] + [
    {"generation": 1, "id": 3, "parent_id": 1, "born": 1, "mutation": HP_LR},
    {"generation": 1, "id": 4, "parent_id": 0, "born": 1, "mutation": ARCH},
    {"generation": 2, "id": 5, "parent_id": 3, "born": 2, "mutation": SKIPPED},
    {"generation": 2, "id": 6, "parent_id": 4, "born": 2, "mutation": LAYER},
]
GENERATIONS = [GenerationRecord.from_json(r) for r in RECORDS]
LINEAGE_RECORDS = [LineageRecord.from_json(r) for r in LINEAGE]
EXPECTED_EDGES = [
    Edge((0, 1), (1, 0), Change.KEPT, "kept"),
    Edge((0, 1), (1, 1), Change.HYPERPARAMETER, "hp:lr"),
    Edge((0, 0), (1, 2), Change.ARCHITECTURE, "arch"),
    Edge((1, 1), (2, 0), Change.KEPT, "kept"),
    Edge((1, 1), (2, 1), Change.NONE, "none"),
    Edge((1, 2), (2, 2), Change.NEW_LAYER, "layer"),
]


def _write_run(run_dir: Path, records, lineage=LINEAGE, tail: str = "") -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    (run_dir / "lineage.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lineage))
    (run_dir / "config.yaml").write_text("evolution:\n  target: 475.0\n")
    return run_dir


def _assert_png(path: Path, min_width: int = 600, min_height: int = 300) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= min_height
    assert float(np.std(image[..., :3])) > 0.05  # not a blank canvas


def test_lineage_edges_founders_and_elites_from_handcrafted_logs():
    lineage = build_lineage(GENERATIONS, LINEAGE_RECORDS)
    assert lineage.edges == EXPECTED_EDGES
    by_id = {(n.generation, n.id): n for n in lineage.nodes}
    assert [by_id[(2, i)].founder for i in (3, 5, 6)] == [1, 1, 0]
    assert [(n.generation, n.slot) for n in lineage.nodes if n.elite] == [(0, 1), (1, 1), (2, 0)]
    assert by_id[(0, 2)].fitness is None  # diverged: null fitness, never the elite


def test_trajectories_follow_only_values_that_vary():
    lineage = build_lineage(GENERATIONS, LINEAGE_RECORDS)
    # batch_size is constant, booleans and nulls are not plotted
    assert lineage.varying() == ["lr", "hidden_size", "head_nodes", "head_layers"]
    child = next(n for n in lineage.nodes if n.id == 6)
    assert child.values["head_layers"] == 2 and child.values["head_nodes"] == 32
    assert child.values["hidden_size"] == 32 and "anneal" not in child.values


def test_labels_come_from_metrics_without_lineage_file_and_stop_at_a_gap():
    assert build_lineage(GENERATIONS, []).edges == EXPECTED_EDGES
    gapped = build_lineage([GENERATIONS[0], GENERATIONS[2]], LINEAGE_RECORDS)
    assert gapped.edges == []  # generation 1 is missing: nothing to connect generation 2 to
    assert build_lineage(GENERATIONS[1:], LINEAGE_RECORDS).edges == EXPECTED_EDGES[3:]


def test_every_mutation_kind_has_a_short_label():
    for kind in MutationKind:
        change, label = mutation_label({"kind": kind.value, "detail": "ent_coef"})
        assert change.value == kind.value and label
    assert mutation_label({"kind": "hyperparameter", "detail": "lr"})[1] == "hp:lr"
    assert mutation_label({"kind": "teleport"}) == (Change.OTHER, "teleport")
    assert mutation_label(None) == (Change.NONE, "none")


def test_torn_last_line_is_skipped_and_plots_are_written(tmp_path):
    run_dir = _write_run(tmp_path / "run", RECORDS, tail='{"generation": 3, "total_env_st')
    assert [r.generation for r in load_metrics(run_dir)] == [0, 1, 2]
    assert read_target(run_dir) == 475.0
    paths = plot_run(run_dir)
    assert [p.name for p in paths] == ["fitness.png", "hparams.png", "lineage.png"]
    assert all(p.parent == run_dir / "plots" for p in paths)
    for path in paths:
        _assert_png(path)


def test_nothing_varied_still_gives_an_hparams_picture(tmp_path):
    same = [{**r, "members": [{**m, "hparams": {"lr": 1e-3}, "spec": {"hidden_size": 16}}
                              for m in r["members"]]} for r in RECORDS]
    typed = [GenerationRecord.from_json(r) for r in same]
    assert build_lineage(typed, LINEAGE_RECORDS).varying() == []
    paths = plot_run(_write_run(tmp_path / "run", same), tmp_path / "out")
    assert read_target(tmp_path / "nowhere") is None
    _assert_png(paths[1])


@pytest.mark.parametrize(("content", "message"), [
    ("", "no readable metrics lines"), ("\n\n", "no readable metrics lines"),
    ("not json\n{\"generation\": 0, \"tot", "no readable metrics lines"),
    ('{"foo": 1}\n', "line 1: not a generation record: 'generation' is missing"),
    ('{"env_steps": 64, "loss": 0.5}\n', "not a generation record"),  # a foreign log
])
def test_unreadable_metrics_is_one_line_user_error(tmp_path, content, message):
    (tmp_path / "metrics.jsonl").write_text(content)
    with pytest.raises(UserError, match=message) as err:
        plot_run(tmp_path)
    assert "\n" not in str(err.value)


def test_missing_run_dir_or_metrics_is_user_error(tmp_path):
    with pytest.raises(UserError, match="run directory not found"):
        plot_run(tmp_path / "nope")
    with pytest.raises(UserError, match=r"has no metrics\.jsonl"):
        plot_run(tmp_path)
    run_dir = _write_run(tmp_path / "run", RECORDS)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot create the plot directory"):
        plot_run(run_dir, tmp_path / "file")


def test_reading_logs_skips_torn_lines_and_refuses_foreign_ones(tmp_path):
    run = RunDir(tmp_path)
    lines = [json.dumps(RECORDS[0]), "[1, 2]", '{"generation": 1, "tot', "", json.dumps(RECORDS[1])]
    run.metrics.write_text("\n".join(lines) + "\n")
    assert run.generations() == GENERATIONS[:2]
    run.metrics.write_text(json.dumps(RECORDS[0]) + '\n{"members": []}\n')
    with pytest.raises(RecordError, match=r"metrics\.jsonl line 2: not a generation record"):
        run.generations()


@pytest.fixture(scope="module")
def evolution_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("evo") / "run"
    run_training(parse_config({**TINY, "eval_episodes": 1, "evolution": EVOLUTION}), run_dir,
                 progress=False, parallel_members=1)
    return run_dir


def test_real_evolution_run(evolution_run, tmp_path):
    records = load_metrics(evolution_run)
    lineage = build_lineage(records, RunDir(evolution_run).lineage_records())
    generations = len(records)
    assert generations == 3 and len(lineage.nodes) == 3 * generations
    # every later member has exactly one predecessor; with elitism one of them is the kept elite,
    # coming from the elite of the generation before
    assert sorted(e.dst for e in lineage.edges) == [(g, s) for g in (1, 2) for s in range(3)]
    elites = {(n.generation, n.slot) for n in lineage.nodes if n.elite}
    kept = [e for e in lineage.edges if e.change is Change.KEPT]
    assert len(elites) == generations and len(kept) == generations - 1
    assert all(e.src in elites and e.dst[1] == 0 for e in kept)
    assert read_target(evolution_run) == 450.0
    paths = plot_run(evolution_run, tmp_path / "pictures")
    assert [p.name for p in paths] == ["fitness.png", "hparams.png", "lineage.png"]
    for path in paths:
        _assert_png(path)


def test_real_single_agent_run_gets_the_same_pictures(tmp_path):
    """A single agent is a population of one: its fitness picture is its learning curve."""
    run_dir = tmp_path / "single"
    run_training(parse_config({**TINY, "eval_episodes": 2}), run_dir, progress=False)
    records = load_metrics(run_dir)
    assert [len(r.members) for r in records] == [1] * len(records) and len(records) > 1
    paths = plot_run(run_dir)
    assert paths == [run_dir / "plots" / f for f in ("fitness.png", "hparams.png", "lineage.png")]
    for path in paths:
        _assert_png(path, min_height=280)
