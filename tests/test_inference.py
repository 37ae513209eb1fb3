"""`evaluate_agent_file`: env resolution, space checks, report numbers and GIF recording."""

import json
from pathlib import Path

import matplotlib.animation
import pytest
from gymnasium import spaces

from evopop import inference
from evopop.agents import Agent, evaluate
from evopop.agents.checkpoint import AgentFileError, load_agent, save_agent
from evopop.config import parse_config
from evopop.envs import EnvError, EnvSpec, make_env
from evopop.errors import UserError
from evopop.inference import evaluate_agent_file
from evopop.rundir import RunDir
from evopop.seeding import torch_generator
from evopop.training import run_training

CAP = 20  # max_episode_steps of the training env: short episodes keep recordings small


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An agent trained for 256 steps on CartPoleNoVel-v1 with episodes capped at CAP steps."""
    config = parse_config({
        "env": {"id": "CartPoleNoVel-v1", "num_envs": 2, "kwargs": {"max_episode_steps": CAP}},
        "ppo": {"learn_step": 32, "batch_size": 32, "update_epochs": 2},
        "max_steps": 256, "eval_episodes": 2, "seed": 3,
    })
    run_dir = tmp_path_factory.mktemp("run")
    run_training(config, run_dir, progress=False)
    return RunDir(run_dir).elite


def gif_frame_count(data: bytes) -> int:
    """Counts the image descriptors of a GIF by walking its blocks (no image library)."""

    def skip_color_table(flags: int, pos: int) -> int:
        return pos + 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else pos

    def skip_sub_blocks(pos: int) -> int:
        while data[pos]:
            pos += data[pos] + 1
        return pos + 1

    pos, frames = skip_color_table(data[10], 13), 0
    while data[pos] != 0x3B:  # trailer
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif data[pos] == 0x2C:  # image descriptor, optional local table, LZW code size, data
            frames += 1
            pos = skip_sub_blocks(skip_color_table(data[pos + 9], pos + 10) + 1)
        else:
            raise AssertionError(f"bad GIF block 0x{data[pos]:02x} at {pos}")
    return frames


def test_report_equals_direct_evaluate_on_the_training_env(agent_file: Path) -> None:
    report = evaluate_agent_file(agent_file, episodes=4, seed=7)
    env = make_env(EnvSpec(id="CartPoleNoVel-v1", kwargs={"max_episode_steps": CAP}))
    direct = evaluate(load_agent(agent_file), env, 4, seed=7)
    assert report.returns == tuple(direct.returns.tolist())
    assert report.lengths == tuple(direct.lengths.tolist())
    assert report.mean == pytest.approx(direct.mean) and report.std == pytest.approx(direct.std)
    assert report.min == min(report.returns) and report.max == max(report.returns)
    assert max(report.lengths) <= CAP  # the file's env kwargs were applied
    assert report.env_id == "CartPoleNoVel-v1" and report.deterministic
    lines = report.lines()
    std = f"{report.std:.1f}" if report.std >= 1 or report.std == 0 else f"{report.std:.3g}"
    assert lines[1].startswith(f"return  {report.mean:.1f} ± {std}  (min ")
    assert lines[1].endswith("over 4 episodes")
    assert lines[2] == f"length  {report.mean_length:.1f} ± {report.std_length:.1f}"
    assert json.loads(json.dumps(report.to_dict()))["returns"] == list(report.returns)


def test_stochastic_uses_a_generator_seeded_from_seed(agent_file: Path) -> None:
    report = evaluate_agent_file(agent_file, episodes=3, seed=2, stochastic=True)
    env = make_env(EnvSpec(id="CartPoleNoVel-v1", kwargs={"max_episode_steps": CAP}))
    direct = evaluate(load_agent(agent_file), env, 3, seed=2, deterministic=False,
                      generator=torch_generator(2))
    assert report.returns == tuple(direct.returns.tolist()) and not report.deterministic
    assert evaluate_agent_file(agent_file, episodes=3, seed=2, stochastic=True) == report


def test_env_override_uses_the_plain_env(agent_file: Path) -> None:
    report = evaluate_agent_file(agent_file, env_id="CartPole-v1", episodes=2)
    direct = evaluate(load_agent(agent_file), make_env("CartPole-v1"), 2, seed=0)
    assert report.env_id == "CartPole-v1"
    assert report.returns == tuple(direct.returns.tolist())


def test_space_mismatch_names_both_spaces(agent_file: Path) -> None:
    with pytest.raises(UserError, match=r"trained on observation space Box\(.*\(4,\).*; "
                                        r"env Pendulum-v1 has Box\(.*\(3,\)"):
        evaluate_agent_file(agent_file, env_id="Pendulum-v1")


def test_action_space_mismatch(tmp_path: Path) -> None:
    env = make_env("Pendulum-v1")
    path = tmp_path / "wrong.safetensors"
    save_agent(Agent(env.observation_space, spaces.Discrete(3)), path,
               extra={"env_id": "Pendulum-v1"})
    with pytest.raises(UserError, match="action space Discrete"):
        evaluate_agent_file(path, episodes=1)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(AgentFileError, match="not found"):
        evaluate_agent_file(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not an agent file")
    with pytest.raises(AgentFileError, match="not a valid evopop file"):
        evaluate_agent_file(bad)


def test_unknown_env_id_suggests_the_closest(agent_file: Path) -> None:
    with pytest.raises(EnvError, match="did you mean 'CartPoleNoVel-v1'"):
        evaluate_agent_file(agent_file, env_id="CartPoleNoVell-v1")


def test_file_without_env_asks_for_env(tmp_path: Path, agent_file: Path) -> None:
    path = tmp_path / "bare.safetensors"
    save_agent(load_agent(agent_file), path)
    with pytest.raises(UserError, match="pass --env"):
        evaluate_agent_file(path)
    assert evaluate_agent_file(path, env_id="CartPoleNoVel-v1", episodes=1).env_id


def test_bad_arguments_fail_before_any_episode(tmp_path: Path, agent_file: Path) -> None:
    with pytest.raises(UserError, match=r"\.gif, \.mp4"):
        evaluate_agent_file(agent_file, record=tmp_path / "out.avi")
    with pytest.raises(UserError, match="episodes must be >= 1"):
        evaluate_agent_file(agent_file, episodes=0)
    assert list(tmp_path.iterdir()) == []


def test_mp4_without_ffmpeg_says_what_to_do(
    tmp_path: Path, agent_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(matplotlib.animation.writers, "is_available", lambda name: False)
    with pytest.raises(UserError, match=r"install ffmpeg or record to a \.gif"):
        evaluate_agent_file(agent_file, record=tmp_path / "out.mp4")


def test_gif_has_one_frame_per_step_and_the_unrecorded_returns(
    tmp_path: Path, agent_file: Path
) -> None:
    gif = tmp_path / "sub" / "out.gif"
    for stochastic in (False, True):
        plain = evaluate_agent_file(agent_file, episodes=3, seed=1, stochastic=stochastic)
        recorded = evaluate_agent_file(agent_file, episodes=3, seed=1, stochastic=stochastic,
                                       record=gif)
        assert recorded.returns == plain.returns and recorded.lengths == plain.lengths
        data = gif.read_bytes()
        assert data.startswith(b"GIF8")
        assert gif_frame_count(data) == sum(recorded.lengths)
        assert recorded.recording is not None
        assert recorded.recording.frames == recorded.recording.total == sum(recorded.lengths)
        assert recorded.lines()[-1] == f"video   {gif}  ({sum(recorded.lengths)} frames)"


def test_frames_beyond_the_cap_are_dropped(
    tmp_path: Path, agent_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "MAX_FRAMES", 5)
    gif = tmp_path / "capped.gif"
    report = evaluate_agent_file(agent_file, episodes=2, record=gif)
    assert gif_frame_count(gif.read_bytes()) == 5
    total = sum(report.lengths)
    assert report.recording is not None and report.recording.total == total > 5
    assert f"(first 5 of {total} frames)" in report.lines()[-1]
