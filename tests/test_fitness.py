"""Fitness: vectorised evaluation (episode j on seed j at any width, finished copies refilled),
`fitness: train` (recent training episodes, evaluation only as a fallback, exact resume), and the
final elite's fresh-episode return in summary.json (seeds disjoint from every evaluation seed)."""

import json
from contextlib import closing

import numpy as np
import pytest

import evopop.evolution.fresh as fresh
import evopop.training as runner
from evopop.agents import NetSpec
from evopop.agents.checkpoint import load_agent
from evopop.agents.evaluation import IN_PROCESS_WIDTH, EpisodeTally, eval_env_spec, evaluate
from evopop.cli import main
from evopop.config import load_config, parse_config
from evopop.envs import EnvSpec
from evopop.envs.make import make_env, make_vec_env
from evopop.envs.metrics import EPISODE_METRICS_KEY
from evopop.envs.spec import Vectorization
from evopop.evolution.fitness import TRAIN_WINDOW, disjoint_start, train_fitness
from evopop.evolution.fresh import eval_seed_ranges, fresh_first_seed
from evopop.evolution.loop import Population, eval_seed
from evopop.records import FreshReturn, RecordError, RunSummary
from evopop.rollouts.group_eval import (
    AT_ONCE_MAX_WIDTH,
    AT_ONCE_MIN_GROUP,
    AT_ONCE_MIN_SHARED_GROUP,
    at_once_pays,
    evaluate_group,
    evaluate_group_shared,
)

TINY = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 4},
    "net": {"cell": "lstm", "hidden_size": 16, "head": [16]},
    "ppo": {"learn_step": 32, "batch_size": 64, "update_epochs": 2},
    "max_steps": 1024,
    "seed": 3,
    "eval_episodes": 3,
    "final_eval_episodes": 20,
    "evolution": {"population_size": 4, "tournament_size": 2, "evo_steps": 256},
}
VOLATILE = {"wall_s", "steps_per_s"}


def _run(tmp_path, name, **changes):
    config = parse_config({**TINY, **changes})
    summary = runner.run_training(config, tmp_path / name, progress=False, parallel_members=1)
    return config, summary


def _stable(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in VOLATILE}


def _metrics(run_dir) -> list[dict]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [_stable(line) for line in lines]


def _vec(env_id: str, copies: int):
    """Gymnasium's envs, as evaluation builds them (`EnvSpec.for_evaluation`)."""
    return make_vec_env(EnvSpec(id=env_id, vectorization="sync"), copies)


def _cartpole_agent(make_agent):
    return make_agent(_vec("CartPoleNoVel-v1", 1), seed=1)


@pytest.mark.parametrize("width", [1, 2, 4, 9, 12])
def test_episode_j_is_played_on_seed_j_at_any_width(make_agent, width):
    agent = _cartpole_agent(make_agent)
    alone = evaluate(agent, make_env("CartPoleNoVel-v1"), 9, seed=4)
    vector = evaluate(agent, _vec("CartPoleNoVel-v1", width), 9, seed=4)
    assert vector.returns.tolist() == alone.returns.tolist()
    assert vector.lengths.tolist() == alone.lengths.tolist()


def _scheduled_steps(lengths: list[int], width: int) -> int:
    """Batched steps when every copy plays its next episode as soon as its last one ends
    (copy i starts with episode i; copies freed at the same step take episodes in copy order)."""
    free_at = [0] * width
    for j, length in enumerate(lengths):
        i = j if j < width else min(range(width), key=lambda c: (free_at[c], c))
        free_at[i] += length
    return max(free_at)


def test_finished_copies_start_the_next_episode_at_once(make_agent):
    agent = _cartpole_agent(make_agent)
    envs = _vec("CartPoleNoVel-v1", 4)
    steps = []
    real_step = envs.step
    envs.step = lambda actions: steps.append(1) or real_step(actions)
    # stochastic: lengths vary more than the untrained deterministic policy's
    lengths = evaluate(agent, envs, 12, seed=4, deterministic=False).lengths.tolist()
    in_batches = sum(max(lengths[b:b + 4]) for b in range(0, 12, 4))  # 4 at a time, waiting
    assert len(steps) == _scheduled_steps(lengths, 4) < in_batches


@pytest.mark.parametrize(("env_id", "spec"), [
    ("CartPoleNoVel-v1", NetSpec(hidden_size=16, head=(16,))),
    ("PendulumNoVel-v1", NetSpec(cell="gru", hidden_size=16, head=(16,), sde=True)),
    ("evopop/DelayedRecallEasy-v0", NetSpec(hidden_size=8, head=(8,), shared_encoder=True)),
])
def test_a_group_evaluated_at_once_scores_as_each_member_alone(make_agent, env_id, spec):
    envs = [_vec(env_id, 3) for _ in range(3)]
    agents = [make_agent(envs[0], seed=p, spec=spec) for p in range(3)]
    for p, (agent, member_envs) in enumerate(zip(agents, envs, strict=True)):
        member_envs.action_space.seed(p)  # members with their own normaliser statistics
        obs, _ = member_envs.reset(seed=100 + p)
        for _ in range(3 + 2 * p):
            agent.preprocess(obs, update=True)
            obs, *_ = member_envs.step(member_envs.action_space.sample())
    together = evaluate_group(agents, envs, 7, seed=11)
    for agent, result in zip(agents, together, strict=True):
        alone = evaluate(agent, _vec(env_id, 3), 7, seed=11)
        assert result.lengths.tolist() == alone.lengths.tolist()
        np.testing.assert_allclose(result.returns, alone.returns, rtol=0, atol=1e-4)
        if env_id != "PendulumNoVel-v1":  # discrete actions: the same to the bit
            assert result.returns.tolist() == alone.returns.tolist()


@pytest.mark.parametrize(("env_id", "wrappers"), [
    ("CartPoleNoVel-v1", []), ("PendulumNoVel-v1", []),
    ("CartPole-v1", [{"noisy": {"sigma": 0.1}}, {"flicker": {"p": 0.3}}])])
def test_a_group_on_one_shared_fast_batch_scores_as_on_its_own_batches(make_agent, env_id,
                                                                      wrappers):
    """One envpool batch of every member's copies plays each member's own episodes (seeded
    noise and flicker included): the returns are those of the group on a batch per member,
    bit for bit (CartPole's members also finish at different steps, and leave the stack)."""
    spec = EnvSpec(id=env_id, vectorization="fast", wrappers=wrappers)
    probe = make_vec_env(spec, 1)
    agents = [make_agent(probe, seed=p, spec=NetSpec(hidden_size=8, head=(8,)))
              for p in range(3)]
    probe.close()
    for p, agent in enumerate(agents):  # members with their own normaliser statistics
        agent.preprocess(np.random.default_rng(p).normal(size=(4 + p, agent.encoder.dim)),
                         update=True)
    envs = [make_vec_env(spec, 5) for _ in agents]
    with closing(make_vec_env(spec, 15)) as batch:
        own = evaluate_group(agents, envs, 5, seed=21)
        shared = evaluate_group_shared(agents, batch, 5, seed=21)
    for member_envs in envs:
        member_envs.close()
    for alone, together in zip(own, shared, strict=True):
        assert together.returns.tolist() == alone.returns.tolist()
        assert together.lengths.tolist() == alone.lengths.tolist()
    if env_id.startswith("CartPole"):
        assert len({r.lengths.sum() for r in own}) > 1


def test_a_shared_batch_needs_a_copy_per_episode_and_an_even_split(make_agent):
    spec = EnvSpec(id="CartPoleNoVel-v1", vectorization="fast")
    agents = [make_agent(_vec("CartPoleNoVel-v1", 1), seed=p) for p in range(2)]
    with closing(make_vec_env(spec, 4)) as four, closing(make_vec_env(spec, 5)) as five:
        with pytest.raises(ValueError, match="a row for every episode"):
            evaluate_group_shared(agents, four, 3, seed=0)
        with pytest.raises(ValueError, match="split evenly"):
            evaluate_group_shared(agents, five, 2, seed=0)
        with pytest.raises(ValueError, match="split evenly"):
            evaluate_group_shared([], four, 2, seed=0)


def test_a_player_of_a_batch_s_rows_reads_its_own_rows_metrics():
    """A player of rows 3..4 of a batch takes row 3 + i's episode metrics for its row i."""
    player = EpisodeTally(np.zeros((2, 1)), 2, 2, seed=0, first_row=3)
    ended = np.array([False, False, False, True, True])
    infos = {"final_info": {EPISODE_METRICS_KEY: {"hits": np.arange(5.0)},
                            f"_{EPISODE_METRICS_KEY}": ended}}
    player.observe(np.zeros((2, 1)), np.array([1.0, 2.0]), ended[3:], np.zeros(2, bool), infos)
    log = player.log()
    assert log.returns == [1.0, 2.0] and log.metrics == [{"hits": 3.0}, {"hits": 4.0}]
    assert not player.running


def test_a_member_that_has_played_its_episodes_leaves_the_group_stack(make_agent, monkeypatch):
    import evopop.rollouts.group_eval as group_eval

    envs = [_vec("CartPoleNoVel-v1", 2) for _ in range(4)]
    steps = [0] * 4
    for p, member_envs in enumerate(envs):
        def counted(actions, p=p, real=member_envs.step):
            steps[p] += 1
            return real(actions)
        member_envs.step = counted
    agents = [make_agent(envs[0], seed=p, spec=NetSpec(hidden_size=8, head=(8,)))
              for p in range(4)]
    widths = []
    real_actor = group_eval.StackedNet.actor
    monkeypatch.setattr(group_eval.StackedNet, "actor",
                        lambda net, obs, state: widths.append(obs.shape[0])
                        or real_actor(net, obs, state))
    evaluate_group(agents, envs, 5, seed=3)
    assert len(set(steps)) > 1  # the members' episodes differ in length
    assert sum(widths) == sum(steps) and len(widths) == max(steps)  # a step each, no more
    assert widths == sorted(widths, reverse=True)


def test_groups_go_at_once_from_the_smallest_measured_group_up_to_the_widest_width():
    assert at_once_pays(AT_ONCE_MIN_GROUP, AT_ONCE_MAX_WIDTH, shared=False)
    assert not at_once_pays(AT_ONCE_MIN_GROUP - 1, 3, shared=False)
    assert at_once_pays(AT_ONCE_MIN_SHARED_GROUP, 3, shared=True)
    assert not at_once_pays(AT_ONCE_MIN_SHARED_GROUP - 1, 3, shared=True)
    assert not at_once_pays(16, AT_ONCE_MAX_WIDTH + 1, shared=True)


@pytest.mark.parametrize(("episodes", "widest", "vectorization", "at_once"), [
    (3, AT_ONCE_MAX_WIDTH, "fast", [("evaluate_group_shared", 4)]),
    (48, AT_ONCE_MAX_WIDTH, "fast", [("evaluate_group_shared", 4)]),
    (3, AT_ONCE_MAX_WIDTH, "sync", [("evaluate_group", 4)]),
    (3, 2, "fast", []),
])
def test_the_batched_engine_evaluates_narrow_groups_at_once(tmp_path, monkeypatch, episodes,
                                                            widest, vectorization, at_once):
    """On envpool's batch a group is evaluated on one batch of all its copies, elsewhere on an
    env per member; too wide an evaluation goes one by one."""
    sizes = _count_group_evaluations(monkeypatch, widest)
    _run(tmp_path, "batched", engine="batched", max_steps=256, eval_episodes=episodes,
         env={**TINY["env"], "vectorization": vectorization})
    members = _metrics(tmp_path / "batched")[0]["members"]
    assert sizes == at_once  # one generation, all four stacked, evaluated at once if narrow
    assert all(len(m["eval_returns"]) == episodes for m in members)
    assert all(m["fitness"] == float(np.mean(m["eval_returns"])) for m in members)


@pytest.mark.parametrize(("vectorization", "at_once"), [
    ("fast", [("evaluate_group_shared", 2)]), ("sync", [])])
def test_a_pair_goes_at_once_only_on_one_shared_batch(make_agent, monkeypatch, vectorization,
                                                      at_once):
    """A chunk of two (W1's under `auto` on two workers) is evaluated at once on envpool's
    batch (AT_ONCE_MIN_SHARED_GROUP), one by one on Gymnasium's envs."""
    from evopop.agents.checkpoint import agent_to_bytes
    from evopop.evolution.task import GroupTask, TrainTask, run_group_task

    sizes = _count_group_evaluations(monkeypatch, AT_ONCE_MAX_WIDTH)
    env = EnvSpec(id="CartPoleNoVel-v1", num_envs=2, vectorization=vectorization)
    agents = [make_agent(_vec("CartPoleNoVel-v1", 1), seed=p, learn_step=16, batch_size=32)
              for p in range(2)]
    tasks = tuple(TrainTask(agent_to_bytes(a), env, eval_env_spec(env, 3), None, 32, 5 + p,
                            (0, 64), 3, 9) for p, a in enumerate(agents))
    results = run_group_task(GroupTask(tasks))
    assert sizes == at_once
    assert all(len(r.eval_returns) == 3 for r in results)


def _count_group_evaluations(monkeypatch, widest: int) -> list[tuple[str, int]]:
    """(function, group size) of every at-once evaluation the workers make."""
    import evopop.evolution.task as task
    import evopop.rollouts.group_eval as group_eval

    monkeypatch.setattr(group_eval, "AT_ONCE_MAX_WIDTH", widest)
    sizes: list[tuple[str, int]] = []

    def counted(name):
        real = getattr(task, name)
        return lambda agents, *args: sizes.append((name, len(agents))) or real(agents, *args)

    for name in ("evaluate_group", "evaluate_group_shared"):
        monkeypatch.setattr(task, name, counted(name))
    return sizes


def test_eval_env_is_lockstep_with_a_copy_per_episode_up_to_the_cap():
    sync = EnvSpec(id="CartPoleNoVel-v1", num_envs=2)
    assert eval_env_spec(sync, 10).num_envs == 10
    assert eval_env_spec(sync, 1000).num_envs == IN_PROCESS_WIDTH
    fast = EnvSpec(id="PendulumNoVel-v1", num_envs=4, vectorization="fast")
    assert (eval_env_spec(fast, 48).vectorization, eval_env_spec(fast, 48).num_envs) == (
        Vectorization.FAST, 48)  # a copy per episode: envpool's batch
    assert eval_env_spec(fast, 1000).vectorization is Vectorization.SYNC  # back to back
    independent = EnvSpec(id="CartPoleNoVel-v1", num_envs=4, vectorization="independent",
                          env_workers=2)
    spec = eval_env_spec(independent, 1000)  # a process per copy: as many as training runs
    assert spec.vectorization.value == "async" and spec.num_envs == 4
    assert eval_env_spec(independent, 3).num_envs == 3


def test_train_fitness_is_the_mean_of_the_last_window_of_episodes():
    returns = [float(i) for i in range(30)]
    assert train_fitness(returns) == sum(returns[-TRAIN_WINDOW:]) / TRAIN_WINDOW == 19.5
    assert train_fitness([1.0, 2.0]) == 1.5
    assert train_fitness([]) is None


def test_train_fitness_needs_no_evaluation_and_resumes_exactly(tmp_path, monkeypatch,
                                                               stop_after_generation):
    _, straight = _run(tmp_path, "straight", fitness="train")
    members = [m for line in _metrics(tmp_path / "straight") for m in line["members"]]
    assert all(m["eval_returns"] == [] and m["fitness"] == m["train_return"] for m in members)
    stop_after_generation(2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed", fitness="train")
    monkeypatch.undo()
    run_dir = tmp_path / "resumed"
    resumed = runner.run_training(load_config(run_dir / "config.yaml"), run_dir, resume=True,
                                  progress=False, parallel_members=1)
    assert _stable(resumed.to_json()) == _stable(straight.to_json())
    assert _metrics(run_dir) == _metrics(tmp_path / "straight")


def test_a_member_that_finished_no_training_episode_is_evaluated_instead():
    config = parse_config({  # 64 env steps per generation; a Pendulum episode is 200 steps
        "env": {"id": "PendulumNoVel-v1", "num_envs": 2},
        "net": {"cell": "gru", "hidden_size": 8, "head": [8]},
        "ppo": {"learn_step": 32, "batch_size": 64, "update_epochs": 1},
        "max_steps": 256, "eval_episodes": 2, "fitness": "train",
        "evolution": {"population_size": 2, "evo_steps": 64}})
    with Population(config) as population:
        fitness = population.train()
        results = population.last_results
    assert all(r.train_return is None and len(r.eval_returns) == 2 for r in results)
    assert fitness == [float(np.mean(r.eval_returns)) for r in results]


def test_summary_has_the_elites_return_on_fresh_episodes_disjoint_from_evaluation(tmp_path):
    config, summary = _run(tmp_path, "a")
    played = summary.elite_fresh
    assert played is not None and played.episodes == 20
    start = played.first_seed
    assert start == fresh_first_seed(config, summary.generations)
    taken = eval_seed_ranges(config, summary.generations)
    assert len(taken) == summary.generations == 4
    assert all(start + 20 <= low or high <= start for low, high in taken)
    elite = load_agent(tmp_path / "a" / "elite.safetensors")
    again = evaluate(elite, make_vec_env(eval_env_spec(config.env, 20)), 20, seed=start)
    assert (played.mean, played.std) == (again.mean, again.std)
    assert RunSummary.from_json(json.loads((tmp_path / "a" / "summary.json").read_text())) \
        == summary
    _, rerun = _run(tmp_path, "b")
    assert rerun.elite_fresh == played


def test_fresh_seeds_move_past_an_evaluation_range_they_would_overlap(monkeypatch):
    config = parse_config(TINY)
    low = eval_seed(config, 1)
    monkeypatch.setattr(fresh, "derive_seed", lambda *keys: low + 2)
    start = fresh_first_seed(config, 4)
    assert start >= low + config.eval_episodes
    assert all(start + 20 <= lo or hi <= start for lo, hi in eval_seed_ranges(config, 4))
    assert disjoint_start(10, 5, [(12, 14), (14, 20), (30, 31)]) == 20
    assert disjoint_start(10, 5, [(15, 20)]) == 10
    assert disjoint_start(10, 5, [(0, 10), (14, 16), (18, 22)]) == 22


def test_no_fresh_episodes_means_no_fresh_key(tmp_path):
    _, summary = _run(tmp_path, "none", final_eval_episodes=0, max_steps=256)
    assert summary.elite_fresh is None
    assert "elite_fresh" not in json.loads((tmp_path / "none" / "summary.json").read_text())


def test_fresh_return_round_trips_and_a_bad_one_is_a_one_line_error():
    summary = RunSummary(False, 1.5, 1.0, 2, 64, 1.0, "ab" * 32,
                         elite_fresh=FreshReturn(0.75, 0.5, 50, 123))
    data = json.loads(json.dumps(summary.to_json(), allow_nan=False))
    assert data["schema_version"] == 1 and data["elite_fresh"]["first_seed"] == 123
    assert RunSummary.from_json(data) == summary
    old = {k: v for k, v in data.items() if k != "elite_fresh"}  # a summary from before
    assert RunSummary.from_json(old).elite_fresh is None
    with pytest.raises(RecordError, match="'mean' is missing"):
        RunSummary.from_json({**data, "elite_fresh": {"std": 1.0}})
    with pytest.raises(RecordError, match="'elite_fresh' is not an object"):
        RunSummary.from_json({**data, "elite_fresh": 3})


def test_train_prints_the_elites_fitness_and_fresh_return(tmp_path, capsys, monkeypatch):
    import evopop.cli as cli

    summary = RunSummary(False, 9.0, 8.25, 2, 64, 1.0, "ab" * 32,
                         elite_fresh=FreshReturn(6.5, 1.25, 50, 123))
    monkeypatch.setattr(runner, "run_training", lambda *args, **kwargs: summary)
    monkeypatch.setattr(cli, "_plot_after_run", lambda run_dir, quiet: None)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(TINY))
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == summary.to_json()
    assert err.strip() == ("elite: fitness 8.25 (selection); fresh 6.50 ± 1.25 over 50 new "
                           "episodes (seeds 123..)")
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_task_of_no_steps_evaluates_without_building_training_envs(monkeypatch, tmp_path):
    """The final elite's fresh episodes are such a task: a worker without the training envs
    cached (a resumed finished run, the batched engine's workers) must not build them."""
    import evopop.evolution.task as task_module

    config, summary = _run(tmp_path, "a")
    first = fresh.fresh_first_seed(config, summary.generations)
    task = fresh.fresh_task(config, (tmp_path / "a" / "elite.safetensors").read_bytes(),
                            summary.generations, "cpu")
    assert task is not None and task.steps == 0 and task.eval_seed == first

    def no_training_envs(*_: object) -> None:
        raise AssertionError("a task of no steps built training envs")

    monkeypatch.setattr(task_module, "cached_rollouts", no_training_envs)
    assert fresh.fresh_return(task, task_module.run_task(task)) == summary.elite_fresh
