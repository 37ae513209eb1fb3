"""Selection strategies: who survives and who copies whom (exact, seeded), what a copy carries,
exact resume, lineage, and one-line config errors."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import evopop.training as runner
from evopop.agents.checkpoint import agent_to_bytes
from evopop.cli import main
from evopop.config import ConfigError, load_config, parse_config
from evopop.config_reference import rows
from evopop.evolution.loop import Population, plan_selection
from evopop.evolution.pbt import multi_frequency_plan, sub_populations, truncation_plan
from evopop.evolution.selection import (
    Migration,
    Op,
    PopulationDiverged,
    Step,
    tournament_plan,
    tournament_select,
)
from evopop.evolution.selection_settings import (
    MultiFrequencySelection,
    TournamentSelection,
    TruncationSelection,
)
from evopop.plots import Change, build_lineage, load_metrics
from evopop.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
KEEP, CLONE, MIGRATE = Op.KEEP, Op.CLONE, Op.MIGRATE
MF = MultiFrequencySelection  # intervals (1, 4), equal split, quantile 0.25


def _steps(plan) -> list[tuple]:
    return [(s.op, s.source) for s in plan]


# --- truncation ---------------------------------------------------------------------------

def test_truncation_bottom_quantile_copies_a_uniform_draw_from_the_top():
    # ranking: slot 4 (8), 2 (7), 6, 0, 7, 3, 5 (2), 1 (1); a quarter of 8 = 2 per bracket
    fitness = [5, 1, 7, 3, 8, 2, 6, 4]
    plan = truncation_plan(fitness, TruncationSelection(quantile=0.25), np.random.default_rng(1))
    draws = np.random.default_rng(1).integers(2, size=2)  # one per loser, in slot order
    assert list(draws) == [0, 1]
    assert _steps(plan) == [(KEEP, 0), (CLONE, 4), (KEEP, 2), (KEEP, 3), (KEEP, 4), (CLONE, 2),
                            (KEEP, 6), (KEEP, 7)]
    assert all(s.migration is None for s in plan)


def test_truncation_brackets_follow_ray_tunes_rule_and_ties_go_by_slot():
    # ceil(n x q) members, at least one, at most half
    one = truncation_plan([1.0] * 4, TruncationSelection(quantile=0.25), np.random.default_rng(0))
    assert _steps(one) == [(KEEP, 0), (KEEP, 1), (KEEP, 2), (CLONE, 0)]
    half = truncation_plan([3.0, 1.0, 2.0], TruncationSelection(quantile=0.5),
                           np.random.default_rng(0))
    assert _steps(half) == [(KEEP, 0), (CLONE, 0), (KEEP, 2)]  # floor(3 / 2) = 1


def test_truncation_replaces_every_diverged_member_and_never_copies_one():
    fitness = [math.nan, 5, -math.inf, 4, math.nan, 3, 2, 1]
    plan = truncation_plan(fitness, TruncationSelection(quantile=0.25), np.random.default_rng(0))
    replaced = {slot for slot, s in enumerate(plan) if s.op is CLONE}
    assert replaced == {0, 2, 4}  # the bottom two are diverged, and so is slot 0
    assert {plan[s].source for s in replaced} <= {1, 3}
    assert all(plan[s] == Step(KEEP, s) for s in (1, 3, 5, 6, 7))  # slot 7 (fitness 1) stays
    with pytest.raises(PopulationDiverged):
        truncation_plan([math.nan, -math.inf], TruncationSelection(), np.random.default_rng(0))


# --- multi-frequency ----------------------------------------------------------------------

def test_multi_frequency_evolves_the_fast_sub_population_and_migrates_a_whole_slower_member():
    # sub-population 0 = slots 0-2 (every generation), 1 = slots 3-5 (every 4th); generation 0
    plan = multi_frequency_plan([1, 3, 2, 6, 4, 5], MF(), 0, np.random.default_rng(0))
    assert list(plan) == [
        Step(CLONE, 1),  # loser <- its winner
        Step(KEEP, 1),
        Step(MIGRATE, 3, Migration(origin=1, destination=0)),  # from slower: the whole member
        Step(KEEP, 3), Step(KEEP, 4), Step(KEEP, 5)]  # not its generation


def test_multi_frequency_both_evolve_and_a_faster_migrant_takes_the_receivers_hyperparameters():
    plan = multi_frequency_plan([9, 1, 2, 6, 4, 5], MF(), 3, np.random.default_rng(0))
    assert list(plan) == [
        Step(KEEP, 0), Step(CLONE, 0), Step(MIGRATE, 3, Migration(origin=1, destination=0)),
        Step(KEEP, 3), Step(CLONE, 3),
        Step(MIGRATE, 0, Migration(origin=0, destination=1, params_from=3))]


def test_multi_frequency_brackets_draws_and_greedy_migration_in_a_larger_population():
    fitness = [3, 10, 6, 8, 1, 14, 0, 7, 4, 13, 15, 2, 12, 5, 9, 11]
    settings = MF(intervals=(1, 2))  # two sub-populations of 8: two members per bracket
    plan = multi_frequency_plan(fitness, settings, 1, np.random.default_rng(0))
    draws = np.random.default_rng(0).integers(2, size=4)  # losers 4, 6 then 8, 11
    assert list(draws) == [1, 1, 1, 0]
    assert list(plan) == [
        Step(MIGRATE, 9, Migration(1, 0)),  # open slots 2 (6) and 0 (3) take 10 (15) and 9 (13)
        Step(KEEP, 1), Step(MIGRATE, 10, Migration(1, 0)), Step(KEEP, 3),
        Step(CLONE, 1), Step(KEEP, 5), Step(CLONE, 1), Step(KEEP, 7),  # winners [5, 1]
        Step(CLONE, 9), Step(KEEP, 9), Step(KEEP, 10), Step(CLONE, 10),  # winners [10, 9]
        Step(KEEP, 12),
        Step(MIGRATE, 1, Migration(0, 1, params_from=10)),  # open 13 (5) < 1 (10)
        Step(MIGRATE, 5, Migration(0, 1, params_from=10)),  # open 14 (9) < 5 (14)
        Step(KEEP, 15)]


def test_multi_frequency_schedule_is_a_function_of_the_generation_alone():
    settings = MF(intervals=(1, 2, 4))
    fitness = list(range(9))  # three sub-populations of 3, the last slot of each the best
    for generation in range(8):
        plan = multi_frequency_plan(fitness, settings, generation, np.random.default_rng(0))
        evolved = [any(plan[s].op is CLONE for s in sub) for sub in sub_populations(settings, 9)]
        assert evolved == [(generation + 1) % i == 0 for i in (1, 2, 4)], generation


def test_multi_frequency_migration_interval_opens_every_sub_population_on_its_own_clock():
    settings = MF(intervals=(1, 4), migration_interval=2)
    fitness = [7, 8, 9, 1, 2, 3]
    odd = multi_frequency_plan(fitness, settings, 1, np.random.default_rng(0))  # tick 2
    assert odd[4] == Step(MIGRATE, 2, Migration(0, 1, params_from=5))  # without evolving
    assert odd[3] == Step(KEEP, 3)  # the slow sub-population's loser waits for its step
    even = multi_frequency_plan(fitness, settings, 2, np.random.default_rng(0))  # tick 3
    assert all(s.op is not MIGRATE for s in even)


def test_multi_frequency_never_keeps_a_diverged_member_and_never_takes_one_in():
    plan = multi_frequency_plan([1, 3, 2, 6, math.nan, 5], MF(), 0, np.random.default_rng(0))
    assert plan[4] == Step(CLONE, 3)  # repaired outside its sub-population's schedule
    dead = multi_frequency_plan([math.nan] * 3 + [1, 2, 3], MF(), 0, np.random.default_rng(0))
    assert [s.source for s in dead[:3]] == [5, 5, 5]  # no finite winner: the global elite


# --- tournament and dispatch ----------------------------------------------------------------

def test_tournament_plan_is_the_tournament_with_the_elite_kept_in_slot_0():
    fitness = list(np.random.default_rng(0).normal(size=6))
    parents = tournament_select(fitness, 3, True, np.random.default_rng(5))
    plan = tournament_plan(fitness, TournamentSelection(size=3), np.random.default_rng(5))
    assert _steps(plan) == [(KEEP, parents[0])] + [(CLONE, p) for p in parents[1:]]
    no_elite = plan_selection(TournamentSelection(size=3, elitism=False), fitness, 0,
                              np.random.default_rng(5))
    assert all(s.op is CLONE for s in no_elite)


# --- in a population -----------------------------------------------------------------------

SMALL = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 4},
    "net": {"cell": "lstm", "hidden_size": 16, "head": [16]},
    "ppo": {"learn_step": 32, "batch_size": 64, "update_epochs": 2},
    "max_steps": 1024, "seed": 3, "eval_episodes": 2, "backend": "local",
    "evolution": {"population_size": 4, "evo_steps": 256,
                  "mutation": {"none": 0.2, "architecture": 0.2, "new_layer": 0.2,
                               "parameters": 0.2, "activation": 0.1, "hyperparameter": 0.2}},
}


def _config(selection, population_size: int = 4, evolution_steps: int = 256, **changes):
    evolution = {**SMALL["evolution"], "selection": selection, "population_size": population_size,
                 "evo_steps": evolution_steps}
    return parse_config({**SMALL, "evolution": evolution, **changes})


def _with_fitness(population: Population, fitness: list[float]) -> None:
    for member, value in zip(population.members, fitness, strict=True):
        member.fitness.append(value)


def test_truncation_copies_whole_members_and_only_the_copies_are_mutated():
    population = Population(_config({"kind": "truncation", "quantile": 0.25}))
    _with_fitness(population, [1.0, 4.0, 3.0, 2.0])  # slot 0 copies slot 1
    before = [agent_to_bytes(m.agent) for m in population.members]
    kept = population.members[1:]
    assert population.select() == [1, 1, 2, 3]
    child = population.members[0]
    assert population.members[1:] == kept  # the same members, same ids, untouched
    assert (child.id, child.parent_id, child.born) == (4, 1, 1)
    assert agent_to_bytes(child.agent) == before[1]  # weights, Adam, normalisers, hps
    assert child.agent.net is not kept[0].agent.net
    events = population.mutate()
    assert len(events) == 1 and child.mutation == events[0].to_dict()
    assert [agent_to_bytes(m.agent) for m in kept] == before[1:]
    assert [(r.id, r.parent_id) for r in population.newborn()] == [(4, 1)]


def test_a_faster_migrant_brings_its_weights_and_takes_the_receivers_hyperparameters():
    population = Population(_config({"kind": "multi_frequency", "intervals": [1, 4]}, 6))
    for slot, member in enumerate(population.members):
        member.agent.set_params(dataclasses.replace(member.agent.params, lr=1e-4 * (slot + 1)))
    _with_fitness(population, [9.0, 1.0, 2.0, 6.0, 4.0, 5.0])
    population.state.generation = 3  # both sub-populations evolve (second plan test above)
    old = list(population.members)
    before = [agent_to_bytes(m.agent) for m in old]
    population.select()
    slow_in, fast_in = population.members[2], population.members[5]
    assert (slow_in.parent_id, fast_in.parent_id) == (old[3].id, old[0].id)
    assert agent_to_bytes(slow_in.agent) == before[3]  # whole member from the slower one
    assert fast_in.agent.params == old[3].agent.params  # the receiving sub-population's best
    weights = fast_in.agent.net.state_dict()
    assert all((weights[k] == v).all() for k, v in old[0].agent.net.state_dict().items())
    assert fast_in.mutation == {"kind": "migration", "detail": "weights from sub-population 0",
                                "old": 0, "new": 1}
    assert slow_in.mutation["detail"] == "whole member from sub-population 1"
    population.mutate()  # the two loser copies (slots 1, 4), not the migrants
    assert agent_to_bytes(slow_in.agent) == before[3]
    assert fast_in.mutation["kind"] == "migration"
    assert {r.id: r.parent_id for r in population.newborn()} == {
        m.id: m.parent_id for m in population.members if m.born == 4}


# --- exact resume, lineage ------------------------------------------------------------------

def _stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in {"wall_s", "steps_per_s"}}


def _metrics(run_dir: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in x.items() if k not in {"wall_s", "steps_per_s"}} for x in lines]


@pytest.mark.parametrize(("selection", "size", "min_kept", "backend"), [
    ({"kind": "truncation", "quantile": 0.25}, 4, 9, "local"),  # 3 of 4 kept each generation
    ({"kind": "multi_frequency", "intervals": [1, 2]}, 6, 10, "processes"),  # 4, 2, 4 at least
], ids=["truncation", "multi_frequency"])
def test_resume_and_backends_give_the_same_run(tmp_path, monkeypatch, selection, size, min_kept,
                                               backend, stop_after_generation):
    """Straight on the local backend; stopped after generation 2 and resumed (there, or on two
    worker processes)."""
    config = _config(selection, size, evolution_steps=64, max_steps=256,
                     env={"id": "CartPoleNoVel-v1", "num_envs": 2})  # 4 generations
    straight = runner.run_training(config, tmp_path / "straight", progress=False)
    stop_after_generation(2)
    with pytest.raises(KeyboardInterrupt):
        runner.run_training(config, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    run_dir = tmp_path / "resumed"
    again = load_config(run_dir / "config.yaml", {"backend": backend})
    resumed = runner.run_training(again, run_dir, resume=True, progress=False, parallel_members=2)
    assert straight.generations == 4
    assert _stable(resumed.to_json()) == _stable(straight.to_json())
    assert _metrics(run_dir) == _metrics(tmp_path / "straight")
    # lineage: every member after generation 0 has exactly one predecessor
    lineage = build_lineage(load_metrics(run_dir), RunDir(run_dir).lineage_records())
    assert sorted(e.dst for e in lineage.edges) == [(g, s) for g in (1, 2, 3) for s in range(size)]
    kept = sum(e.change is Change.KEPT for e in lineage.edges)
    assert kept >= min_kept  # most of a PBT population passes on unchanged
    if selection["kind"] == "multi_frequency":
        records = RunDir(run_dir).lineage_records()
        assert any(r.mutation and r.mutation["kind"] == "migration" for r in records)


# --- configs -----------------------------------------------------------------------------

BASE = {"env": {"id": "CartPoleNoVel-v1"}}
BAD = [
    ({"selection": "elitist"}, "evolution.selection: kind must be one of tournament, truncation, "
                               "multi_frequency, not 'elitist'"),
    ({"selection": {"size": 2}}, "evolution.selection: kind must be one of"),
    ({"selection": {"kind": "truncation", "quantile": 0.6}},
     "evolution.selection.quantile: Input should be less than or equal to 0.5"),
    ({"selection": {"kind": "truncation", "quantil": 0.2}},
     "unknown config key 'evolution.selection.quantil'; did you mean 'quantile'?"),
    ({"selection": {"kind": "tournament", "size": 5}}, "larger than population_size (4)"),
    ({"selection": "truncation", "population_size": 1}, "needs population_size >= 2"),
    ({"selection": "multi_frequency", "population_size": 7},
     "population_size (7) does not split into 2 equal sub-populations; give selection.sizes"),
    ({"selection": {"kind": "multi_frequency", "sizes": [3, 3]}, "population_size": 7},
     "selection.sizes add up to 6, not population_size (7)"),
    ({"selection": {"kind": "multi_frequency", "intervals": [1, 2, 4]}, "population_size": 6},
     "each needs at least 3"),
    ({"selection": {"kind": "multi_frequency", "intervals": [2, 2]}, "population_size": 6},
     "intervals must be strictly increasing"),
    ({"selection": {"kind": "multi_frequency", "sizes": [6]}, "population_size": 6},
     "sizes has 1 entries but intervals has 2"),
    ({"selection": {"kind": "multi_frequency", "quantile": 0.3}, "population_size": 8},
     "quantile 0.3 puts 2 of a sub-population of 4 in each of its winner, migration"),
    ({"tournament_size": 2, "selection": "truncation"},
     "'tournament_size' is the old spelling of selection.size; give selection alone"),
]


@pytest.mark.parametrize(("evolution", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_selection_settings_are_one_line_errors(evolution, message):
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "evolution": evolution})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_bad_selection_on_the_command_line_is_one_line_and_exit_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "evolution": {"population_size": 3}}))
    try:
        code = main(["train", str(config), "--run-dir", str(tmp_path / "run"), "--quiet",
                     "--set", "evolution.selection.kind=multi_frequency"])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "does not split into 2 equal sub-populations" in err


def test_old_tournament_keys_still_mean_a_tournament_and_the_name_alone_its_defaults():
    old = parse_config({**BASE, "evolution": {"tournament_size": 3, "elitism": False}})
    assert old.evolution.selection == TournamentSelection(size=3, elitism=False)
    assert parse_config({**BASE, "evolution": {}}).evolution.selection == TournamentSelection()
    named = parse_config({**BASE, "evolution": {"selection": "truncation"}})
    assert named.evolution.selection == TruncationSelection()
    dumped = named.model_dump(mode="json")["evolution"]["selection"]
    assert dumped == {"kind": "truncation", "quantile": 0.25}
    assert parse_config({**BASE, "evolution": {"selection": dumped}}) == named


def test_bundled_configs_and_the_selection_sweep_are_valid():
    from evopop.sweep.spec import load_sweep

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if not path.name.startswith("sweep_"):
            load_config(path)
    plan = load_sweep(ROOT / "configs" / "sweep_selection.yaml")
    kinds = [run.config.evolution.selection.kind.value for run in plan.runs]
    assert kinds == ["tournament"] * 3 + ["truncation"] * 3 + ["multi_frequency"] * 3
    for run in plan.runs:
        evo = run.config.evolution
        assert run.config.env.id == "PendulumNoVel-v1" and evo.target is None
        assert run.config.max_steps // evo.evo_steps >= 8  # generations of evolution


def test_the_config_reference_lists_every_strategys_keys():
    keys = [key for key, _, _ in rows()]
    for key in ("evolution.selection.kind", "evolution.selection.size",
                "evolution.selection.quantile", "evolution.selection.intervals",
                "evolution.selection.migration_interval"):
        assert key in keys
    assert "evolution.tournament_size" not in keys
