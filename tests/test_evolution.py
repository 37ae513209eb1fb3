"""The generation loop: reproducible on any backend, exact resume, diverged members culled."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import evopop.evolution.backends as backends
import evopop.training as runner
from evopop.agents.checkpoint import agent_to_bytes, load_agent
from evopop.config import load_config, parse_config
from evopop.errors import UserError
from evopop.evolution.backends import MemberHandler, PoolBackend
from evopop.evolution.engine import Engine
from evopop.evolution.loop import Population
from evopop.evolution.population import Member, load_state, save_state
from evopop.execution.inline import InlinePool
from evopop.rundir import RunDir

TINY = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 4},
    "net": {"cell": "lstm", "hidden_size": 16, "head": [16]},
    "ppo": {"learn_step": 32, "batch_size": 64, "update_epochs": 2},
    "max_steps": 1024,
    "seed": 3,
    "eval_episodes": 2,
    "evolution": {"population_size": 4, "tournament_size": 2, "evo_steps": 256,
                  "mutation": {"none": 0.2, "architecture": 0.2, "new_layer": 0.2,
                               "parameters": 0.2, "activation": 0.1, "hyperparameter": 0.2}},
}
VOLATILE = {"wall_s", "steps_per_s"}


def _run(tmp_path: Path, name: str, workers: int = 1, **changes) -> tuple[dict, Path]:
    config = parse_config({**TINY, **changes})
    run_dir = tmp_path / name
    summary = runner.run_training(config, run_dir, progress=False, parallel_members=workers)
    return summary.to_json(), run_dir


def _start_cli_run(config: Path, run_dir: Path, workers: int, **popen) -> subprocess.Popen:
    """`evopop train` in a subprocess, returned once its first checkpoint is on disk."""
    cmd = [sys.executable, "-m", "evopop.cli", "train", str(config), "--run-dir", str(run_dir),
           "--parallel-members", str(workers), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, **popen)
    deadline = time.monotonic() + 90
    while not (run_dir / "checkpoint.safetensors").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def _stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def _metrics(run_dir: Path) -> list[dict]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in VOLATILE} for line in lines]


def test_run_directory_contents_and_elite_file(tmp_path):
    summary, run_dir = _run(tmp_path, "a")
    assert summary["generations"] == 4 and summary["total_env_steps"] == 4 * 1024
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.yaml", "metrics.jsonl", "lineage.jsonl", "checkpoint.safetensors",
        "elite.safetensors", "summary.json"}
    metrics = _metrics(run_dir)
    assert [m["generation"] for m in metrics] == [0, 1, 2, 3]
    assert all(len(m["members"]) == 4 and "hparams" in m["members"][0] for m in metrics)
    lineage = [json.loads(x) for x in (run_dir / "lineage.jsonl").read_text().splitlines()]
    assert len(lineage) == 4 + 3 * 3  # founders + three non-elite children per generation
    assert all(rec["mutation"]["kind"] for rec in lineage[4:])
    assert load_agent(run_dir / "elite.safetensors").spec.cell.value == "lstm"
    assert json.loads((run_dir / "summary.json").read_text()) == summary


@pytest.mark.parametrize("engine", ["per_member", "collection"])
def test_same_seed_same_elite_and_workers_do_not_matter(tmp_path, engine):
    """`collection` batches by group, in chunks that follow the workers: a chunk's size must
    not change a member's arithmetic (`evopop.evolution.plan`)."""
    one, dir_one = _run(tmp_path, "one", workers=1, engine=engine)
    again, _ = _run(tmp_path, "again", workers=1, engine=engine)
    two, dir_two = _run(tmp_path, "two", workers=2, engine=engine)
    assert one["elite_sha256"] == again["elite_sha256"] == two["elite_sha256"]
    assert _metrics(dir_one) == _metrics(dir_two)
    other, _ = _run(tmp_path, "other", seed=4, engine=engine)
    assert other["elite_sha256"] != one["elite_sha256"]


def test_auto_gives_the_same_elite_in_process_as_on_two_worker_processes(tmp_path):
    """Fully batched groups round as their chunks do, so the backends plan for the configured
    worker count, not their pool's: the in-process backend (one worker) cuts the population
    into the same two chunks as two worker processes."""
    local, _ = _run(tmp_path, "local", workers=2, backend="local", max_steps=512)
    processes, _ = _run(tmp_path, "processes", workers=2, max_steps=512)
    one, _ = _run(tmp_path, "one", workers=1, backend="local", max_steps=512)
    assert local["elite_sha256"] == processes["elite_sha256"] != one["elite_sha256"]


def test_a_run_plans_for_at_most_one_worker_per_member_and_saves_it(tmp_path):
    """A Ray cluster may fit far more workers than members; planning for more plans as for
    one per member, and the checkpoint keeps what it can load."""
    backend = PoolBackend(InlinePool([MemberHandler]), Engine.AUTO, width=1600)
    population = Population(parse_config(TINY), backend)
    assert population.state.batch_width == backend.width == 4
    save_state(tmp_path / "c.safetensors", population.state)
    assert load_state(tmp_path / "c.safetensors").batch_width == 4


def test_elite_passes_unchanged_and_children_are_independent_copies(tmp_path):
    population = Population(parse_config(TINY))
    for slot, member in enumerate(population.members):
        member.fitness.append(float(slot))  # member 3 is the elite
    before = {m.id: agent_to_bytes(m.agent) for m in population.members}
    assert population.elite.id == 3
    population.select()
    events = population.mutate()
    born = population.newborn()
    assert len(events) == 3 and population.generation == 1
    assert [(r.id, r.parent_id, r.generation) for r in born] == \
        [(m.id, m.parent_id, 1) for m in population.members[1:]]
    elite, children = population.members[0], population.members[1:]
    assert elite.id == 3 and agent_to_bytes(elite.agent) == before[3]
    assert all(c.id >= 4 and c.parent_id in before for c in children)
    child_params = {id(p) for c in children for p in c.agent.net.parameters()}
    assert not child_params & {id(p) for p in elite.agent.net.parameters()}
    for child in children:
        assert {id(p) for g in child.agent.optimizer.param_groups for p in g["params"]} == \
            {id(p) for p in child.agent.net.parameters()}


def test_a_member_builds_its_agent_only_when_asked_and_clones_stay_apart(tmp_path):
    """Members keep the bytes workers return; a clone shares them until it is changed, and
    a change to the clone's agent leaves its parent's bytes as they were."""
    population = Population(parse_config(TINY))
    data = agent_to_bytes(population.members[0].agent)
    parent = Member(7, None, 0, data)
    child = parent.clone(8, 1)
    assert child.source is data and parent.agent_bytes is data
    assert child.spec_and_params() == (parent.agent.spec, parent.agent.params)
    child.agent.set_params(dataclasses.replace(child.agent.params, lr=0.5))
    assert parent.agent_bytes == data and child.agent_bytes != data
    assert child.spec_and_params()[1].lr == 0.5
    # a checkpoint takes the same tensors and header from a built agent as from its bytes
    (built, built_header), (read, read_header) = child.parts(), \
        Member(9, None, 0, child.agent_bytes).parts()
    assert json.dumps(built_header) == json.dumps(read_header)
    assert built.keys() == read.keys()
    assert all(torch.equal(built[k], read[k]) for k in built)


def test_resume_after_an_interrupt_gives_the_same_result(tmp_path, monkeypatch,
                                                         stop_after_generation):
    straight, straight_dir = _run(tmp_path, "straight")
    stop_after_generation(2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed")
    monkeypatch.undo()
    run_dir = tmp_path / "resumed"
    assert load_state(run_dir / "checkpoint.safetensors").generation == 2
    resumed = runner.run_training(load_config(run_dir / "config.yaml"), run_dir, resume=True,
                                   progress=False)
    assert _stable(resumed.to_json()) == _stable(straight)
    assert _metrics(run_dir) == _metrics(straight_dir)


@pytest.mark.parametrize("engine,batched_update", [("auto", True), ("collection", False)])
def test_batched_engine_same_seed_same_elite_and_exact_resume(tmp_path, monkeypatch,
                                                              stop_after_generation, engine,
                                                              batched_update):
    """`auto` stacks collection and update; `collection` batches a chunk of 4 on one env with
    each member's own update (`evopop.evolution.engine.batching`)."""
    groups = []
    real = backends.run_group_task
    monkeypatch.setattr(backends, "run_group_task",
                        lambda group: groups.append((len(group.members), group.batched_update))
                        or real(group))
    straight, straight_dir = _run(tmp_path, "straight", engine=engine)
    assert max(groups) == (4, batched_update)  # generation 0: all four stack
    again, _ = _run(tmp_path, "again", engine=engine)
    assert _stable(again) == _stable(straight)
    stop_after_generation(2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed", engine=engine)
    run_dir = tmp_path / "resumed"
    assert load_state(run_dir / "checkpoint.safetensors").batch_width == 1
    # two workers now: the run keeps the chunks it began with (its batch_width)
    resumed = runner.run_training(load_config(run_dir / "config.yaml"), run_dir, resume=True,
                                  progress=False, parallel_members=2)
    assert _stable(resumed.to_json()) == _stable(straight)
    assert _metrics(run_dir) == _metrics(straight_dir)


def test_kill_9_mid_run_loses_at_most_the_generation_in_progress(tmp_path):
    base, base_dir = _run(tmp_path, "base", max_steps=2048)
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**TINY, "max_steps": 2048}))
    run_dir = tmp_path / "killed"
    proc = _start_cli_run(config, run_dir, workers=1, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed, not finished
    killed_at = load_state(run_dir / "checkpoint.safetensors")
    assert not killed_at.finished and killed_at.generation < base["generations"] - 1
    resumed = subprocess.run([sys.executable, "-m", "evopop.cli", "train", "--resume",
                              str(run_dir), "--quiet"], capture_output=True, text=True, check=True)
    assert _stable(json.loads(resumed.stdout)) == _stable(base)
    assert _metrics(run_dir) == _metrics(base_dir)


def test_a_diverged_member_gets_minus_inf_and_the_run_goes_on(tmp_path, monkeypatch):
    real_initial = runner.initial_state

    def poisoned(config):
        state = real_initial(config)
        with torch.no_grad():
            next(state.members[1].agent.net.parameters()).fill_(math.nan)
        return state

    monkeypatch.setattr(runner, "initial_state", poisoned)
    summary, run_dir = _run(tmp_path, "nan", max_steps=512)
    first = _metrics(run_dir)[0]["members"]
    assert first[1]["fitness"] is None and first[1]["finite"] is False  # -inf, as strict JSON
    assert all(m["finite"] for i, m in enumerate(first) if i != 1)
    assert math.isfinite(summary["best_fitness"]) and summary["generations"] == 2


def test_evolution_solves_cartpole_novel(tmp_path):
    """End to end on the bundled config: the elite reaches the 475 target."""
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "cartpole_novel.yaml")
    summary = runner.run_training(config, tmp_path, progress=False, parallel_members=2)
    assert summary.target_reached and summary.elite_fitness >= 475


def _ctrl_c_on() -> None:
    """A shell starts background jobs with SIGINT ignored, and children inherit that (a suite
    run as `cmd &` would test nothing): the run gets the default, as from a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_cleanly_and_the_run_resumes_to_the_same_result(tmp_path):
    base, _ = _run(tmp_path, "base", workers=2, max_steps=2048)  # auto: chunks follow workers
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**TINY, "max_steps": 2048}))
    run_dir = tmp_path / "interrupted"
    proc = _start_cli_run(config, run_dir, workers=2, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, preexec_fn=_ctrl_c_on)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    resumed = subprocess.run([sys.executable, "-m", "evopop.cli", "train", "--resume",
                              str(run_dir), "--parallel-members", "2", "--quiet"],
                             capture_output=True, text=True, check=True)
    assert _stable(json.loads(resumed.stdout)) == _stable(base)


class _FakeRun:
    def __init__(self) -> None:
        self.points: list[tuple[dict, int]] = []
        self.finished = False

    def log(self, point, step):
        self.points.append((point, step))

    def finish(self):
        self.finished = True


def test_wandb_logging_is_offline_without_login(tmp_path, monkeypatch):
    run = _FakeRun()
    calls = {}

    def init(**kwargs):
        calls.update(kwargs)
        return run

    monkeypatch.setitem(sys.modules, "wandb", type(sys)("wandb"))
    sys.modules["wandb"].init = init
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    config = parse_config({**TINY, "max_steps": 512})
    runner.run_training(config, tmp_path / "w", progress=False, wandb=True)
    assert calls["mode"] == "offline" and calls["project"] == "evopop"
    assert [step for _, step in run.points] == [4 * 256, 4 * 512] and run.finished
    assert {"elite_fitness", "member_0/fitness", "steps_per_s"} <= set(run.points[0][0])


def test_resuming_a_finished_run_keeps_every_log_line(tmp_path):
    summary, run_dir = _run(tmp_path, "done")
    metrics = _metrics(run_dir)
    again = runner.run_training(parse_config(TINY), run_dir, resume=True, progress=False)
    assert _stable(again.to_json()) == _stable(summary) and _metrics(run_dir) == metrics


def test_torn_log_line_is_dropped_on_resume(tmp_path, monkeypatch, stop_after_generation):
    def tear_lineage(path):
        with (path.parent / "lineage.jsonl").open("a") as fh:
            fh.write('{"generation": 2, "id": 9, "par')  # killed mid-write

    stop_after_generation(1, tear_lineage)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "torn")
    monkeypatch.undo()
    straight, straight_dir = _run(tmp_path, "straight")
    resumed = runner.run_training(parse_config(TINY), tmp_path / "torn", resume=True,
                                   progress=False)
    assert _stable(resumed.to_json()) == _stable(straight)
    lineage = (tmp_path / "torn" / "lineage.jsonl").read_text()
    assert lineage == (straight_dir / "lineage.jsonl").read_text()


def test_a_used_run_dir_is_refused_unless_overwritten(tmp_path):
    _, run_dir = _run(tmp_path, "used", max_steps=256)
    with pytest.raises(UserError, match="--resume"):
        runner.run_training(parse_config(TINY), run_dir, progress=False)
    summary = runner.run_training(parse_config({**TINY, "max_steps": 256}), run_dir,
                                   progress=False, overwrite=True)
    assert summary.generations == 1
    assert len(_metrics(run_dir)) == 1


def test_async_envs_work_inside_worker_processes(tmp_path):
    """The same episodes as sync copies, so the same run, one by one (`collection` would batch the
    sync run's collection on one shared env but not the async run's: other rounding)."""
    env = {**TINY["env"], "vectorization": "async", "num_envs": 2}
    summary, _ = _run(tmp_path, "async", workers=2, env=env, max_steps=256,
                      engine="per_member")
    sync, _ = _run(tmp_path, "sync", workers=1, env={**env, "vectorization": "sync"},
                   max_steps=256, engine="per_member")
    assert summary["elite_sha256"] == sync["elite_sha256"]


SINGLE = {k: v for k, v in TINY.items() if k != "evolution"} | {"eval_episodes": 2}


def test_single_agent_generation_length_is_whole_rollouts_about_a_twentieth():
    rollout = 4 * 32
    assert parse_config({**SINGLE, "max_steps": 1024}).population().evo_steps == rollout
    assert parse_config({**SINGLE, "max_steps": 40 * rollout}).population().evo_steps \
        == 2 * rollout
    evo = parse_config(SINGLE).population()
    assert (evo.population_size, evo.selection.size, evo.selection.elitism, evo.target) == \
        (1, 1, True, None)
    assert evo.mutation.probabilities()[0] == 1.0


def test_a_single_agent_is_a_population_of_one_and_resumes_exactly(tmp_path, monkeypatch,
                                                                   stop_after_generation):
    straight, straight_dir = _run(tmp_path, "straight", **{"evolution": None, "eval_episodes": 2})
    metrics = _metrics(straight_dir)
    assert straight["generations"] == len(metrics) == 8 and straight["total_env_steps"] == 1024
    assert all(len(m["members"]) == 1 and m["members"][0]["id"] == 0 for m in metrics)
    assert len(RunDir(straight_dir).lineage_records()) == 1  # the founder, never mutated
    assert load_agent(straight_dir / "elite.safetensors").spec.cell.value == "lstm"
    stop_after_generation(3)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed", **{"evolution": None, "eval_episodes": 2})
    monkeypatch.undo()
    run_dir = tmp_path / "resumed"
    resumed = runner.run_training(load_config(run_dir / "config.yaml"), run_dir, resume=True,
                                   progress=False)
    assert _stable(resumed.to_json()) == _stable(straight)
    assert _metrics(run_dir) == metrics
