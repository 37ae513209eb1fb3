"""The CLI: a short training run end to end, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from evopop.agents.checkpoint import load_agent
from evopop.cli import main
from evopop.rundir import RunDir

TINY = """
env: {id: CartPoleNoVel-v1, num_envs: 2}
net: {cell: gru, hidden_size: 8, head: [8]}
ppo: {learn_step: 32, batch_size: 32, update_epochs: 1}
max_steps: 128
eval_episodes: 2
"""


def test_train_writes_a_run_directory(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--quiet", "--seed", "3"]) == 0
    summary = RunDir(run).read_summary()
    assert summary.total_env_steps == 128 and summary.generations == 2  # one rollout each
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert "seed: 3" in (run / "config.yaml").read_text()
    assert (run / "plots" / "fitness.png").read_bytes()[:4] == b"\x89PNG"  # plotted after
    agent = load_agent(run / "elite.safetensors")
    assert agent.spec.cell.value == "gru"
    assert json.loads(capsys.readouterr().out) == summary.to_json()


def test_the_command_exits_fast_after_train_with_its_output_flushed_into_a_pipe(tmp_path):
    """`evopop train` skips the interpreter's teardown (`os._exit`): the summary line written
    into a pipe (block-buffered) and the run's files must all be there, the exit code kept."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "evopop.cli", "train", str(cfg), "--run-dir",
                           str(run), "--quiet", "--seed", "3"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == RunDir(run).read_summary().to_json()
    assert (run / "plots" / "lineage.png").read_bytes()[:4] == b"\x89PNG"
    failed = subprocess.run([sys.executable, "-m", "evopop.cli", "train", str(cfg), "--run-dir",
                             str(run), "--quiet"], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1  # exists: one line


def test_a_single_agent_run_resumes_and_logs_to_wandb(tmp_path, capsys, monkeypatch):
    runs = []
    stub = type(sys)("wandb")
    stub.init = lambda **kwargs: runs.append(_WandbRun()) or runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", stub)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--quiet", "--wandb"]) == 0
    (run / "summary.json").unlink()
    assert main(["train", "--resume", str(run), "--quiet", "--wandb"]) == 0
    assert [step for _, step in runs[0].points] == [64, 128] and runs[1].points == []
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert RunDir(run).read_summary().total_env_steps == 128


class _WandbRun:
    def __init__(self) -> None:
        self.points: list = []

    def log(self, point, step):
        self.points.append((point, step))

    def finish(self):
        pass


@pytest.mark.parametrize(("content", "args", "fragment"), [
    (None, [], "config file not found"),
    ("env: [unclosed\n", [], "malformed YAML"),
    (TINY.replace("CartPoleNoVel-v1", "CartPoleNoVl-v1"), [], "CartPoleNoVel-v1"),
    (TINY, ["--set", "ppo.btach_size=8"], "did you mean 'batch_size'"),
    (TINY, ["--set", "noequals"], "--set expects key=value"),
    (TINY + "env_packages: [x]\n", [], "unknown config key 'env_packages'"),
    (TINY.replace("env: {", "env: {packages: [no_such_pkg_zz], "), [], "not installed"),
])
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(tmp_path, capsys, content, args,
                                                          fragment):
    cfg = tmp_path / "c.yaml"
    if content is not None:
        cfg.write_text(content)
    code = main(["train", str(cfg), "--run-dir", str(tmp_path / "r"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_debug_flag_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "evopop.cli", "--debug", "train", str(tmp_path / "none.yaml")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "config file not found" in proc.stderr


def test_envs_lists_novel_ids_and_wrappers(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "PendulumNoVel-v1" in out and "mask_velocity" in out
