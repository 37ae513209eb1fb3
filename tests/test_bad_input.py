"""Bad input, table-driven: every case is one line on stderr, exit code 2, no traceback."""

import sys
from pathlib import Path

import pytest
import yaml

from evopop.cli import main

BASE = {
    "env": {"id": "CartPoleNoVel-v1", "num_envs": 2},
    "net": {"cell": "gru", "hidden_size": 8, "head": [8]},
    "ppo": {"learn_step": 32, "batch_size": 32, "update_epochs": 1},
    "max_steps": 64,
    "eval_episodes": 1,
    "evolution": {"population_size": 2, "tournament_size": 2, "evo_steps": 32},
}


def _config(**changes: object) -> dict:
    """BASE with dotted-key changes; a value of ... deletes the key."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


# (case id, config mapping or raw text or None for no file, extra argv, fragment of the message)
TRAIN_CASES = [
    ("missing-file", None, [], "config file not found"),
    ("malformed-yaml", "env: {id: CartPole\nppo: [\n", [], "malformed YAML"),
    ("not-a-mapping", "- a\n- b\n", [], "must hold a mapping"),
    ("unknown-env-id", _config(env__id="CartPoleNoVl-v1"), [], "did you mean 'CartPoleNoVel-v1'"),
    ("env-package-missing", _config(env__packages=["no_such_pkg_zz"]), [], "not installed"),
    ("box2d-missing", _config(env__id="LunarLanderNoVel-v3"), [], "box2d"),
    ("bad-env-kwargs", _config(env__kwargs={"gravity_zz": 1}), [], "bad env.kwargs"),
    ("unknown-top-key", _config(max_step=5), [], "did you mean 'max_steps'"),
    ("unknown-ppo-key", _config(ppo__lerning_rate=1e-3), [], "did you mean"),
    ("unknown-evolution-key", _config(evolution__populaton_size=3), [],
     "did you mean 'population_size'"),
    ("unknown-mutation-key", _config(evolution__mutation={"archtecture": 0.1}), [],
     "did you mean 'architecture'"),
    ("zero-envs", _config(env__num_envs=0), [], "env.num_envs"),
    ("zero-population", _config(evolution__population_size=0), [], "population_size"),
    ("negative-hidden", _config(net__hidden_size=-1), [], "hidden_size must be a positive"),
    ("zero-head-layer", _config(net__head=[0]), [], "head layer size"),
    ("zero-batch", _config(ppo__batch_size=0), [], "batch_size must be a positive"),
    ("negative-learn-step", _config(ppo__learn_step=-5), [], "learn_step must be a positive"),
    ("zero-max-steps", _config(max_steps=0), [], "max_steps"),
    ("zero-eval-episodes", _config(eval_episodes=0), [], "eval_episodes"),
    ("renamed-eval-loop", _config(evolution__eval_loop=3), [],
     "'evolution.eval_loop' was renamed: write 'eval_episodes'"),
    ("renamed-workers", _config(workers=2), [], "'workers' was renamed: write 'parallel_members'"),
    ("renamed-workers-flag", _config(), ["--workers", "2"],
     "--workers was renamed: use --parallel-members"),
    ("probability-above-1", _config(evolution__mutation={"none": 1.5}), [], "mutation.none"),
    ("probability-below-0", _config(evolution__mutation={"parameters": -0.1}), [],
     "mutation.parameters"),
    ("batch-larger-than-rollout", _config(ppo__batch_size=1000), [], "larger than a rollout"),
    ("tournament-too-big", _config(evolution__tournament_size=3), [], "tournament_size"),
    ("gamma-above-1", _config(ppo__gamma=1.5), [], "gamma must be in [0, 1]"),
    ("zero-lr", _config(ppo__lr=0), [], "lr must be > 0"),
    ("lr-not-a-number", _config(ppo__lr="fast"), [], "ppo.lr"),
    ("unknown-activation", _config(net__activation="swish"), [], "net.activation"),
    ("unknown-cell", _config(net__cell="transformer"), [], "net.cell"),
    ("unknown-vectorization", _config(env__vectorization="threads"), [], "env.vectorization"),
    ("unknown-wrapper", _config(env__wrappers=["mask_velocty"]), [], "mask_velocity"),
    ("bad-wrapper-argument", _config(env__wrappers=[{"noisy": {"sigma": -1}}]), [], "sigma"),
    ("wrapper-after-prev-action-reward",
     _config(env__wrappers=["prev_action_reward", "mask_velocity"]), [],
     "prev_action_reward must be the last wrapper"),
    ("unknown-hp-in-space", _config(evolution__mutation={"hp_space": {"lrr": {"low": 1e-4,
                                                                              "high": 1e-2}}}),
     [], "did you mean 'lr'"),
    ("hp-bounds-reversed", _config(evolution__mutation={"hp_space": {"lr": {"low": 1e-2,
                                                                            "high": 1e-4}}}),
     [], "must be <= high"),
    ("set-without-equals", _config(), ["--set", "ppo.lr"], "--set expects key=value"),
    ("set-unknown-key", _config(), ["--set", "ppo.btach_size=8"], "did you mean 'batch_size'"),
    ("workers-zero", _config(), ["--parallel-members", "0"], "expected a positive integer"),
    ("env-workers-above-copies", _config(env__vectorization="independent", env__env_workers=3),
     [], "env_workers (3) is larger than num_envs (2)"),
    ("unknown-env-worker-backend", _config(env__env_worker_backend="slurm"), [],
     "env.env_worker_backend"),
    ("unknown-backend", _config(backend="slurm"), [], "backend: Input should be 'local'"),
    ("ray-env-workers-without-ray", _config(env__vectorization="independent",
                                            env__env_worker_backend="ray"), [],
     "env.env_worker_backend: ray needs backend: ray"),
    ("unknown-ray-key", _config(ray={"adress": "auto"}), [], "did you mean 'address'"),
    ("zero-cpus-per-member", _config(ray={"num_cpus_per_member": 0}), [],
     "ray.num_cpus_per_member"),
    ("ray-address-without-ray", _config(), ["--backend", "local", "--ray-address", "auto"],
     "--ray-address needs --backend ray"),
    ("unknown-flag", _config(), ["--frobnicate"], "unrecognized arguments"),
    ("infinite-lr", "env: {id: CartPoleNoVel-v1}\nppo: {lr: .inf}\n", [],
     "ppo.lr: Input should be a finite number"),
    ("nan-target", _config(evolution__target=float("nan")), [], "evolution.target"),
    ("infinite-mutation-sd", _config(evolution__mutation={"mutation_sd": float("inf")}), [],
     "mutation_sd"),
    ("hundred-million-envs", _config(env__num_envs=100_000_000), [],
     "env.num_envs: Input should be less than or equal to 4096"),
    ("ten-million-hidden", _config(net__hidden_size=10_000_000), [],
     "hidden_size must be at most 4096"),
    ("million-wide-head", _config(net__head=[1_000_000, 1_000_000]), [],
     "head layer size must be at most 4096"),
    ("huge-population", _config(evolution__population_size=10**6), [], "population_size"),
    ("deep-yaml", "env: " + "[" * 5000 + "]" * 5000 + "\n", [], "nested too deeply"),
    ("does-not-fit-in-memory", _config(env__num_envs=4096, net__hidden_size=4096,
                                       net__head=[4096, 4096], ppo__learn_step=4096,
                                       evolution__population_size=64,
                                       evolution__tournament_size=2), [],
     "GiB (members, their rollouts and envs) but the machine has"),
]


def _run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits through SystemExit
        code = exit_.code
    return code, capsys.readouterr().err


def _assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    assert fragment in err, err
    assert err.count("\n") == 1 and err.startswith("evopop: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(("content", "args", "fragment"),
                         [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_bad_train_input(tmp_path: Path, capsys, content, args, fragment):
    cfg = tmp_path / "c.yaml"
    if isinstance(content, dict):
        cfg.write_text(yaml.safe_dump(content))
    elif content is not None:
        cfg.write_text(content)
    argv = ["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet",
            "--parallel-members", "1"]
    code, err = _run_cli(capsys, [*argv, *args])
    _assert_one_line_error(code, err, fragment)


def test_bad_resume_input(tmp_path: Path, capsys):
    code, err = _run_cli(capsys, ["train", "--resume", str(tmp_path / "nope")])
    _assert_one_line_error(code, err, "nothing to resume")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_config()))
    code, err = _run_cli(capsys, ["train", str(cfg), "--resume", str(tmp_path)])
    _assert_one_line_error(code, err, "drop CONFIG")
    code, err = _run_cli(capsys, ["train", "--resume", str(tmp_path), "--overwrite"])
    _assert_one_line_error(code, err, "--overwrite")


def test_a_used_run_dir_is_refused_and_overwrite_clears_the_old_plots(tmp_path: Path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_config()))
    argv = ["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet",
            "--parallel-members", "1"]
    assert main(argv) == 0
    assert (tmp_path / "run" / "plots" / "lineage.png").exists()
    capsys.readouterr()
    code, err = _run_cli(capsys, argv)
    _assert_one_line_error(code, err, "already holds a run")
    single = {k: v for k, v in _config().items() if k != "evolution"}
    cfg.write_text(yaml.safe_dump(single))
    assert main([*argv, "--overwrite"]) == 0
    plots = sorted(p.name for p in (tmp_path / "run" / "plots").iterdir())
    assert plots == ["fitness.png", "hparams.png", "lineage.png"]  # the single agent's own
    (tmp_path / "file").write_text("x")
    code, err = _run_cli(capsys, ["train", str(cfg), "--run-dir", str(tmp_path / "file")])
    _assert_one_line_error(code, err, "is a file")


def test_malformed_set_value_and_binary_config(tmp_path: Path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_config()))
    code, err = _run_cli(capsys, ["train", str(cfg), "--set", "net.head=[64", "--quiet"])
    _assert_one_line_error(code, err, "not a valid YAML value")
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    code, err = _run_cli(capsys, ["train", str(binary), "--quiet"])
    _assert_one_line_error(code, err, "not a text (UTF-8) YAML file")


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory) -> Path:
    """A real agent file from a tiny single-agent run on CartPoleNoVel."""
    from evopop.config import parse_config
    from evopop.training import run_training

    run_dir = tmp_path_factory.mktemp("agent")
    config = {**BASE, "max_steps": 64}
    config.pop("evolution")
    run_training(parse_config(config), run_dir / "run", progress=False)
    return run_dir / "run" / "elite.safetensors"


def _evaluate_cases(agent: Path, tmp: Path) -> list[tuple[str, list[str], str]]:
    corrupt = tmp / "corrupt.safetensors"
    corrupt.write_bytes(agent.read_bytes()[:200])
    pickled = tmp / "pickled.safetensors"
    pickled.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    return [
        ("missing-agent-file", [str(tmp / "nope.safetensors")], "not found"),
        ("corrupt-agent-file", [str(corrupt)], "not a valid evopop file"),
        ("pickle-agent-file", [str(pickled)], "never unpickles"),
        ("other-observation-space", [str(agent), "--env", "Pendulum-v1"], "observation space"),
        ("unknown-eval-env", [str(agent), "--env", "CartPoleNoVl-v1"], "CartPoleNoVel-v1"),
        ("bad-record-suffix", [str(agent), "--record", str(tmp / "out.avi")], ".gif"),
        ("zero-episodes", [str(agent), "--episodes", "0"], "positive integer"),
    ]


def test_bad_evaluate_input(agent_file: Path, tmp_path: Path, capsys):
    for case, args, fragment in _evaluate_cases(agent_file, tmp_path):
        code, err = _run_cli(capsys, ["evaluate", *args])
        assert code == 2, case
        _assert_one_line_error(code, err, fragment)


def test_ray_backend_without_ray_installed(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_config()))
    code, err = _run_cli(capsys, ["train", str(cfg), "--run-dir", str(tmp_path / "run"),
                                  "--quiet", "--backend", "ray"])
    _assert_one_line_error(code, err, "pip install 'evopop[ray]'")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"base": "c.yaml", "grid": {"ppo.lr": [1e-3]}, "seeds": [0]}))
    code, err = _run_cli(capsys, ["sweep", str(sweep), "--out", str(tmp_path / "o"),
                                  "--ray-address", "auto"])
    _assert_one_line_error(code, err, "--ray-address needs --backend ray")


def test_bad_plot_input(tmp_path: Path, capsys):
    code, err = _run_cli(capsys, ["plot", str(tmp_path / "nope")])
    _assert_one_line_error(code, err, "run directory not found")
    code, err = _run_cli(capsys, ["plot", str(tmp_path)])
    _assert_one_line_error(code, err, "metrics.jsonl")


def test_bad_sweep_input(tmp_path: Path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(_config()))
    cases = [
        ("missing-sweep-file", None, "not found"),
        ("malformed-sweep", "grid: [\n", "YAML"),
        ("unknown-sweep-key", {"base": "base.yaml", "grid": {"evolution.mutaton.none": [0.1]},
                               "seeds": [0]}, "did you mean 'mutation'"),
        ("unknown-sweep-field", {"base": "base.yaml", "grid": {"ppo.lr": [1e-3]}, "seeds": [0],
                                 "sead": 1}, "sead"),
        ("empty-seeds", {"base": "base.yaml", "grid": {"ppo.lr": [1e-3]}, "seeds": []}, "seeds"),
        ("missing-base", {"base": "nope.yaml", "grid": {"ppo.lr": [1e-3]}, "seeds": [0]},
         "nope.yaml"),
    ]
    (tmp_path / "taken").write_text("x")
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump({"base": "base.yaml", "grid": {"ppo.lr": [1e-3]}, "seeds": [0]}))
    code, err = _run_cli(capsys, ["sweep", str(ok), "--out", str(tmp_path / "taken")])
    _assert_one_line_error(code, err, "is a file")
    for case, content, fragment in cases:
        sweep = tmp_path / f"{case}.yaml"
        if isinstance(content, dict):
            sweep.write_text(yaml.safe_dump(content))
        elif content is not None:
            sweep.write_text(content)
        code, err = _run_cli(capsys, ["sweep", str(sweep), "--out", str(tmp_path / case)])
        assert code == 2, (case, err)
        _assert_one_line_error(code, err, fragment)
