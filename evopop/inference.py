"""Evaluating, and optionally recording, a saved agent file: what `evopop evaluate` runs.

Episodes run one at a time on a single env and episode j is reset with seed `seed + j` (as in
`evopop.agents.evaluation`), so a recorded evaluation gives exactly the numbers of an unrecorded
one, deterministic or stochastic: a vector env would batch the network and change the last bits
of continuous actions. The env is rebuilt from the agent file's env section (wrappers, kwargs,
packages), so the agent sees what it saw in training.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from pydantic import ValidationError

from evopop.agents.agent import Agent
from evopop.agents.checkpoint import load_agent, read_metadata
from evopop.agents.device import resolve_device
from evopop.agents.evaluation import EvalResult, evaluate
from evopop.agents.spaces import batch_one, space_to_dict
from evopop.envs import EnvSpec, make_env
from evopop.envs.metrics import mean_metrics
from evopop.envs.satellite_timeline import (
    TimelineError,
    check_plot_path,
    draw_timeline,
    is_satellite_env,
    record_timeline,
)
from evopop.errors import UserError
from evopop.seeding import torch_generator

MAX_FRAMES = 1000  # frames written to a video; later ones are counted, not kept (memory bound)
MAX_SIDE_PX = 320  # longest side of a video frame; larger renders are scaled down
_CAPTION_PX = 24
_DPI = 100


class VideoFormat(str, Enum):
    """Video files `record` can write, by suffix."""

    GIF = ".gif"
    MP4 = ".mp4"


def resolve_env(meta: dict[str, Any], env_id: str | None, source: str) -> EnvSpec:
    """`env_id` as a plain env if given, else the env recorded in the file's metadata (stepped
    in this process)."""
    if env_id:
        return EnvSpec(id=env_id)
    extra = meta.get("extra") or {}
    section = extra.get("env")
    if isinstance(section, dict) and section.get("id"):
        try:  # episodes run in this process, whatever stepped the training copies
            return EnvSpec.model_validate({**section, "vectorization": "sync"})
        except ValidationError as error:
            raise UserError(f"{source} records a malformed env section: "
                            f"{error.errors()[0]['msg']}") from None
    if extra.get("env_id"):
        return EnvSpec(id=str(extra["env_id"]))
    raise UserError(f"{source} does not record the env it was trained on; pass --env ENV_ID")


def policy_step(agent: Agent, deterministic: bool = True,
                generator: torch.Generator | None = None) -> Callable[[Any], Any]:
    """The agent as a one-env policy that carries its own recurrent state: observation in,
    action out, stepping exactly as `evopop.agents.evaluation` does."""
    state = agent.initial_state(1)

    def step(obs: Any) -> Any:
        nonlocal state
        action, state = agent.act(batch_one(obs), state, None, deterministic, generator)
        return action[0]

    return step


def _describe(space: gym.Space) -> str:
    return " ".join(str(space).split())  # numpy may wrap long bounds over several lines


def check_spaces(agent: Agent, env_id: str, obs_space: gym.Space, act_space: gym.Space) -> None:
    """Refuses an env whose observation or action space differs from the agent's."""
    pairs = (("observation", agent.observation_space, obs_space),
             ("action", agent.action_space, act_space))
    for kind, trained, actual in pairs:
        if space_to_dict(trained) != space_to_dict(actual):
            raise UserError(f"agent file was trained on {kind} space {_describe(trained)}; "
                            f"env {env_id} has {_describe(actual)}")


@dataclass(frozen=True)
class Recording:
    """A written video: `frames` of the `total` frames the episodes had (fewer when capped)."""

    path: Path
    frames: int
    total: int


@dataclass(frozen=True)
class EvalReport:
    """Per-episode returns and lengths of one evaluation, with their summary statistics."""

    env_id: str
    deterministic: bool
    seed: int
    returns: tuple[float, ...]
    lengths: tuple[int, ...]
    mean: float
    std: float
    min: float
    max: float
    mean_length: float
    std_length: float
    recording: Recording | None = None
    timeline: Path | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)  # env-reported, means

    @classmethod
    def from_result(cls, result: EvalResult, env_id: str, deterministic: bool, seed: int,
                    recording: Recording | None = None,
                    timeline: Path | None = None) -> EvalReport:
        returns, lengths = result.returns, result.lengths
        return cls(env_id, deterministic, seed, tuple(returns.tolist()), tuple(lengths.tolist()),
                   float(returns.mean()), float(returns.std()), float(returns.min()),
                   float(returns.max()), float(lengths.mean()), float(lengths.std()), recording,
                   timeline, mean_metrics(result.metrics))

    def lines(self) -> list[str]:
        """Human-readable summary for the command line."""
        n = len(self.returns)
        mode = "deterministic" if self.deterministic else "stochastic"
        out = [
            f"env     {self.env_id}  ({mode}, episode seeds {self.seed}..{self.seed + n - 1})",
            f"return  {_num(self.mean)} ± {_num(self.std)}  "
            f"(min {_num(self.min)}, max {_num(self.max)}) over {n} episodes",
            f"length  {self.mean_length:.1f} ± {self.std_length:.1f}",
        ]
        rec = self.recording
        if rec is not None:
            kept = f"first {rec.frames} of {rec.total}" if rec.frames < rec.total else rec.total
            out.append(f"video   {rec.path}  ({kept} frames)")
        if self.metrics:
            shown = ", ".join(f"{k} {'n/a' if v is None else f'{v:.3g}'}"
                              for k, v in self.metrics.items())
            out.append(f"metrics {shown}  (episode means)")
        if self.timeline is not None:
            out.append(f"plot    {self.timeline}  (timeline of episode seed {self.seed})")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for `--json` output or logs)."""
        paths = {"recording", "timeline"}
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in paths}
        data["returns"], data["lengths"] = list(self.returns), list(self.lengths)
        rec = self.recording
        data["recording"] = None if rec is None else {
            "path": str(rec.path), "frames": rec.frames, "total": rec.total}
        data["timeline"] = None if self.timeline is None else str(self.timeline)
        return data


def _num(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def video_format(path: Path) -> VideoFormat:
    """The format a video path asks for; checked before any episode runs."""
    try:
        fmt = VideoFormat(path.suffix.lower())
    except ValueError:
        valid = ", ".join(f.value for f in VideoFormat)
        raise UserError(f"cannot record to {path}: use a file ending in {valid}") from None
    if fmt is VideoFormat.MP4:
        from matplotlib import animation

        if not animation.writers.is_available("ffmpeg"):
            raise UserError(f"cannot record to {path}: .mp4 needs ffmpeg on PATH; "
                            "install ffmpeg or record to a .gif")
    return fmt


def default_timeline_path(agent_path: Path) -> Path:
    """Where `--plot` without a path writes: next to the agent file."""
    agent_path = Path(agent_path)
    return agent_path.with_name(f"{agent_path.stem}_timeline.png")


def check_timeline_target(env_id: str, plot: Path) -> None:
    """Refuses `--plot` before any episode runs: only the satellite env has a timeline."""
    if not is_satellite_env(env_id):
        raise TimelineError(f"--plot draws a satellite timeline; {env_id} has none")
    check_plot_path(plot)


def evaluate_agent_file(
    path: Path,
    env_id: str | None = None,
    episodes: int = 10,
    seed: int = 0,
    stochastic: bool = False,
    record: Path | None = None,
    plot: Path | None = None,
    device: str = "cpu",
) -> EvalReport:
    """Runs a saved agent for `episodes` episodes (episode j seeded `seed + j`) and reports.

    The env is the file's training env (id, wrappers, kwargs, packages); `env_id` replaces it
    with that plain id. `record` also writes the episodes as a `.gif` (matplotlib's
    PillowWriter) or `.mp4` (ffmpeg) video captioned with episode, step and return; at most
    `MAX_FRAMES` frames are kept, each scaled to at most `MAX_SIDE_PX` pixels, which bounds
    memory whatever the episode lengths. `plot` (satellite env only) replays the first
    episode afterwards and draws its timeline to that PNG. The agent acts on `device`.
    """
    path = Path(path)
    if episodes < 1:
        raise UserError(f"episodes must be >= 1, got {episodes}")
    if seed < 0:
        raise UserError(f"seed must be >= 0, got {seed}")
    fmt = video_format(Path(record)) if record is not None else None
    agent = load_agent(path, resolve_device(device))
    source = resolve_env(read_metadata(path), env_id, str(path))
    if plot is not None:
        check_timeline_target(source.id, Path(plot))
    env = make_env(source, render_mode="rgb_array" if fmt is not None else None)
    try:
        check_spaces(agent, source.id, env.observation_space, env.action_space)
        generator = torch_generator(seed) if stochastic else None
        recording = timeline = None
        if fmt is None:
            result = evaluate(agent, env, episodes, seed, not stochastic, generator)
        else:
            result, recording = _record(agent, env, source.id, episodes, seed, generator,
                                        Path(record), fmt)
        if plot is not None:  # a fresh generator: the replay is exactly episode `seed`
            replay = torch_generator(seed) if stochastic else None
            timeline = record_timeline(env, policy_step(agent, not stochastic, replay), seed)
    finally:
        env.close()
    plot_path = draw_timeline(timeline, Path(plot)) if timeline is not None else None
    return EvalReport.from_result(result, source.id, not stochastic, seed, recording, plot_path)


class _FrameRecorder(gym.Wrapper):
    """Hands the rendered frame after every step, with a caption, to `sink`."""

    def __init__(self, env: gym.Env, sink: Callable[[np.ndarray, str], None]) -> None:
        super().__init__(env)
        self.sink = sink
        self.episode, self.steps, self.total = 0, 0, 0.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.episode, self.steps, self.total = self.episode + 1, 0, 0.0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        self.total += float(reward)
        caption = f"episode {self.episode}   step {self.steps}   return {self.total:.1f}"
        self.sink(self.env.render(), caption)
        return obs, reward, terminated, truncated, info


def _first_frame(env: gym.Env, env_id: str, seed: int) -> np.ndarray:
    """A frame to size the video by; the evaluation's own reset reseeds the env fully."""
    # rgb_array frames need no display; without this pygame's SDL probes for one (and complains
    # on headless machines). It must be set before the env's first render initialises pygame.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env.reset(seed=seed)
    frame = env.render()
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3):
        raise UserError(f"env {env_id} cannot render rgb_array frames, so it cannot be recorded")
    return frame


class _VideoSink:
    """Draws frames with their caption into a matplotlib figure and a movie writer."""

    def __init__(self, frame_shape: tuple[int, ...], fmt: VideoFormat, fps: int) -> None:
        from matplotlib import animation
        from matplotlib.figure import Figure

        height, width = frame_shape[:2]
        scale = min(1.0, MAX_SIDE_PX / max(height, width))
        w, h = 2 * round(width * scale / 2), 2 * round(height * scale / 2)  # even: ffmpeg needs it
        self.figure = Figure(figsize=(w / _DPI, (h + _CAPTION_PX) / _DPI), dpi=_DPI)
        ax = self.figure.add_axes((0.0, 0.0, 1.0, h / (h + _CAPTION_PX)))
        ax.set_axis_off()
        self.image = ax.imshow(np.zeros(frame_shape, np.uint8), aspect="auto")
        self.caption = self.figure.text(0.02, 1.0 - 0.5 * _CAPTION_PX / (h + _CAPTION_PX), "",
                                        va="center", fontsize=9, family="monospace")
        writer = animation.PillowWriter if fmt is VideoFormat.GIF else animation.FFMpegWriter
        self.writer = writer(fps=fps)
        self.frames = self.total = 0

    def __call__(self, frame: np.ndarray, caption: str) -> None:
        self.total += 1
        if self.frames >= MAX_FRAMES:
            return
        self.image.set_data(frame)
        self.caption.set_text(caption)
        self.writer.grab_frame()
        self.frames += 1


def _record(
    agent: Agent, env: gym.Env, env_id: str, episodes: int, seed: int,
    generator: torch.Generator | None, path: Path, fmt: VideoFormat,
) -> tuple[EvalResult, Recording]:
    """Evaluates on the rendering env, streaming every step's frame into the video file."""
    sink = _VideoSink(_first_frame(env, env_id, seed).shape, fmt,
                      int(env.metadata.get("render_fps") or 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    with sink.writer.saving(sink.figure, str(path), dpi=_DPI):
        deterministic = generator is None  # stochastic evaluation always passes its generator
        result = evaluate(agent, _FrameRecorder(env, sink), episodes, seed, deterministic,
                          generator)
    return result, Recording(path, sink.frames, sink.total)
