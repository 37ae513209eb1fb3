"""The example scripts run end to end on a tiny budget and produce what they promise."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from evopop.agents.checkpoint import load_agent, read_metadata
from evopop.inference import evaluate_agent_file

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def elite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("script") / "elite.safetensors"
    proc = run_script("train_pendulum_novel.py", "--max-steps", "128", "--evo-steps", "64",
                      "--population", "2", "--num-envs", "2", "--seed", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_train_script_prints_generations_and_saves_a_usable_elite(elite: tuple[Path, str]) -> None:
    out, stdout = elite
    gens = re.findall(r"^gen +(\d+) +steps/member +(\d+) +fitness .* elite +(-?\d+\.\d)",
                      stdout, re.M)
    assert [(g, s) for g, s, _ in gens] == [("0", "64"), ("1", "128")]
    meta = read_metadata(out)
    assert meta["extra"]["env"]["id"] == "PendulumNoVel-v1"
    assert f"{meta['extra']['fitness']:.1f}" == gens[-1][2]
    assert load_agent(out).spec.sde
    assert evaluate_agent_file(out, episodes=1).lengths == (200,)


def test_enjoy_prints_one_return_per_episode(elite: tuple[Path, str]) -> None:
    proc = run_script("enjoy_elite.py", str(elite[0]), "--episodes", "3", "--num-envs", "2")
    assert proc.returncode == 0, proc.stderr
    episodes = re.findall(r"^episode +(\d+) +return +(-?\d+\.\d) +length 200$", proc.stdout, re.M)
    assert [j for j, _ in episodes] == ["1", "2", "3"]
    mean = sum(float(r) for _, r in episodes) / 3
    assert f"mean return {mean:.1f} over 3 episodes" in proc.stdout


def test_enjoy_reports_a_wrong_env_as_one_line(
    elite: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["enjoy_elite.py", str(elite[0]), "--env", "CartPole-v1"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPTS / "enjoy_elite.py"), run_name="__main__")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "env CartPole-v1 has Box" in err
