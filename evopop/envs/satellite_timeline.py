"""Episode timeline of the scanning satellite: what `evopop evaluate AGENT --plot` draws.

A return alone does not say why a satellite policy fails or succeeds; the timeline shows battery
and storage levels, wheel speeds and the chosen action against sim time, with eclipses and
ground-station passes shaded, so one can see e.g. a battery drained by scanning in eclipse.
Nothing here imports bsk-rl or matplotlib at import time: the core package must import without
them. State is read from `env.unwrapped` (bsk-rl's `SatelliteTasking`) after reset and after
every step of the (possibly wrapped) env.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from evopop.envs.satellite import SATELLITE_ENV_ID, SatelliteAction
from evopop.errors import UserError

Window = tuple[float, float]
"""A (start, end) interval in seconds of sim time."""

GROUND_STATION = "ground_station"  # bsk-rl's opportunity type of ground-station passes
PLOT_SUFFIX = ".png"

ECLIPSE_COLOUR = "0.45"
GROUND_STATION_COLOUR = "tab:green"
ACTION_COLOURS: dict[SatelliteAction, str] = {
    SatelliteAction.SCAN: "tab:purple",
    SatelliteAction.CHARGE: "tab:orange",
    SatelliteAction.DOWNLINK: "tab:cyan",
    SatelliteAction.DESATURATE: "tab:red",
}
WHEEL_COLOURS = ("tab:blue", "tab:olive", "tab:pink")


class TimelineError(UserError):
    """The env cannot be drawn as a satellite timeline."""


def is_satellite_env(env_id: str) -> bool:
    """Whether an env id (plain or "module:id") names the scanning satellite env."""
    return env_id.rpartition(":")[2] == SATELLITE_ENV_ID


@dataclass(frozen=True)
class Sample:
    """The satellite's state at one decision time (after reset or after a step)."""

    time_s: float
    battery: float
    storage: float
    wheels: tuple[float, float, float]

    @classmethod
    def read(cls, env: Any) -> Sample:
        """Reads the bsk-rl satellite env (unwrapped) now; wheels as fractions of their limit."""
        dynamics = env.satellite.dynamics
        wheels = np.asarray(dynamics.wheel_speeds_fraction, dtype=float)
        return cls(
            time_s=float(env.simulator.sim_time),
            battery=float(dynamics.battery_charge_fraction),
            storage=float(dynamics.storage_level_fraction),
            wheels=(float(wheels[0]), float(wheels[1]), float(wheels[2])),
        )


@dataclass(frozen=True, eq=False)
class Timeline:
    """One episode as arrays: n + 1 samples (reset, then each of the n steps) and n actions.

    Action i is held from `time_s[i]` to `time_s[i + 1]`. Windows are clipped to the episode.
    """

    time_s: np.ndarray
    battery: np.ndarray
    storage: np.ndarray
    wheels: np.ndarray  # [n + 1, 3], fraction of the maximum wheel speed
    actions: np.ndarray  # [n], SatelliteAction values
    eclipses: tuple[Window, ...]
    ground_stations: tuple[Window, ...]
    episode_return: float
    alive: bool
    orbit_period_s: float
    seed: int

    @classmethod
    def from_samples(
        cls, samples: Sequence[Sample], actions: Sequence[int], **rest: Any
    ) -> Timeline:
        """Stacks per-sample records into arrays; `rest` holds the remaining fields."""
        if len(samples) != len(actions) + 1:
            raise ValueError(
                f"need one more sample than actions, got {len(samples)}, {len(actions)}"
            )
        return cls(
            time_s=np.array([s.time_s for s in samples]),
            battery=np.array([s.battery for s in samples]),
            storage=np.array([s.storage for s in samples]),
            wheels=np.array([s.wheels for s in samples]).reshape(len(samples), 3),
            actions=np.array(actions, dtype=np.int64),
            **rest,
        )

    @property
    def end_s(self) -> float:
        """Sim time at which the episode ended."""
        return float(self.time_s[-1])


def merge_windows(windows: Iterable[Window], end_s: float) -> tuple[Window, ...]:
    """Clips windows to [0, end_s], drops empty ones and merges overlaps (sorted by start)."""
    clipped = sorted((max(0.0, float(a)), min(end_s, float(b))) for a, b in windows)
    merged: list[Window] = []
    for start, end in clipped:
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def eclipse_windows(trajectory: Any, end_s: float) -> tuple[Window, ...]:
    """Eclipses within [0, end_s], walked with bsk-rl's `trajectory.next_eclipse(t)`.

    `next_eclipse` gives the next eclipse start and end strictly after t; an end before the
    start means t is in eclipse. When it finds no transition it returns (1.0, 1.0), which
    never passes the "both after t and distinct" check, so the walk stops.
    """
    windows: list[Window] = []
    t = 0.0
    while t < end_s:
        start, end = (float(x) for x in trajectory.next_eclipse(t))
        if not (start > t and end > t and start != end):
            break
        if start < end and start >= end_s:
            break
        windows.append((t if end < start else start, end))
        t = end
    return merge_windows(windows, end_s)


def ground_station_windows(
    opportunities: Iterable[dict[str, Any]], end_s: float
) -> tuple[Window, ...]:
    """Times some ground station is in view, from bsk-rl's `satellite.opportunities`."""
    windows = (o["window"] for o in opportunities if o["type"] == GROUND_STATION)
    return merge_windows(windows, end_s)


def _satellite_env(env: gym.Env) -> Any:
    """The bsk-rl env under any wrappers; refused early rather than failing mid-episode."""
    unwrapped = env.unwrapped
    satellite = getattr(unwrapped, "satellite", None)
    if satellite is None or not hasattr(satellite, "opportunities"):
        name = env.spec.id if env.spec is not None else type(unwrapped).__name__
        raise TimelineError(f"{name} is not the {SATELLITE_ENV_ID} env; it has no timeline")
    return unwrapped


Policy = Callable[[Any], Any]
"""One step of a (stateful) policy: an observation in, an action out; it carries its own
recurrent state, so this module needs to know nothing of agents."""


def record_timeline(env: gym.Env, policy: Policy, seed: int = 0) -> Timeline:
    """Plays one episode reset with `seed` with a fresh `policy`, and records it.

    With `evopop.inference.policy_step` the return equals that of evaluation episode `seed`.
    Eclipses are searched only after the episode, so the search cannot alter the episode itself.
    """
    sat_env = _satellite_env(env)
    obs, _ = env.reset(seed=seed)
    samples, actions, total, done = [Sample.read(sat_env)], [], 0.0, False
    while not done:
        action = policy(obs)
        obs, reward, terminated, truncated, _ = env.step(action)
        actions.append(int(action))
        samples.append(Sample.read(sat_env))
        total += float(reward)
        done = bool(terminated or truncated)
    end_s = samples[-1].time_s
    satellite = sat_env.satellite
    return Timeline.from_samples(
        samples,
        actions,
        eclipses=eclipse_windows(satellite.trajectory, end_s),
        ground_stations=ground_station_windows(satellite.opportunities, end_s),
        episode_return=total,
        alive=bool(satellite.is_alive(log_failure=False)),
        orbit_period_s=float(sat_env.config.orbit_period_s),
        seed=seed,
    )


def check_plot_path(path: Path) -> None:
    """Refuses a path that is not a PNG before any episode runs."""
    if path.suffix.lower() != PLOT_SUFFIX:
        raise TimelineError(f"cannot plot to {path}: use a file ending in {PLOT_SUFFIX}")


def _shade(ax: Any, timeline: Timeline) -> None:
    """Eclipse and ground-station windows behind the data of one panel."""
    for windows, colour, alpha in (
        (timeline.eclipses, ECLIPSE_COLOUR, 0.3),
        (timeline.ground_stations, GROUND_STATION_COLOUR, 0.2),
    ):
        for start, end in windows:
            ax.axvspan(start / 60, end / 60, color=colour, alpha=alpha, lw=0, zorder=0)
    ax.grid(alpha=0.3)


def _draw_levels(ax: Any, minutes: np.ndarray, timeline: Timeline) -> None:
    ax.plot(minutes, timeline.battery, ".-", color="tab:blue", ms=3, label="battery")
    ax.plot(minutes, timeline.storage, ".-", color="tab:brown", ms=3, label="storage")
    ax.set(ylim=(-0.03, 1.03), ylabel="fraction of capacity")
    ax.legend(loc="upper left", fontsize=8, ncols=2)


def _draw_wheels(ax: Any, minutes: np.ndarray, timeline: Timeline) -> None:
    for axis, (name, colour) in enumerate(zip("xyz", WHEEL_COLOURS, strict=True)):
        ax.plot(minutes, timeline.wheels[:, axis], ".-", color=colour, ms=3, label=f"wheel {name}")
    for limit in (-1.0, 1.0):
        ax.axhline(limit, color="black", ls="--", lw=0.8)
    top = max(1.0, float(np.abs(timeline.wheels).max(initial=0.0)))
    ax.set(ylim=(-1.08 * top, 1.08 * top), ylabel="wheel speed / max")
    ax.legend(loc="upper left", fontsize=8, ncols=3)


def _draw_actions(ax: Any, minutes: np.ndarray, timeline: Timeline) -> None:
    spans = list(zip(minutes[:-1], np.diff(minutes), strict=True))
    for action in SatelliteAction:
        bars = [span for span, a in zip(spans, timeline.actions, strict=True) if a == action]
        ax.broken_barh(bars, (action.value - 0.35, 0.7), color=ACTION_COLOURS[action])
    ax.set_yticks([a.value for a in SatelliteAction], [a.name.lower() for a in SatelliteAction])
    ax.set(ylim=(len(SatelliteAction) - 0.5, -0.5), ylabel="action", xlabel="sim time [min]")


def _title(timeline: Timeline) -> str:
    orbits = timeline.end_s / timeline.orbit_period_s
    fate = "survived" if timeline.alive else "FAILED"
    return (
        f"{SATELLITE_ENV_ID}, seed {timeline.seed}: return {timeline.episode_return:.3f}, "
        f"satellite {fate} ({orbits:.2f} orbits, {len(timeline.actions)} steps)"
    )


def draw_timeline(timeline: Timeline, path: Path) -> Path:
    """Writes the episode as a PNG of three panels sharing a time axis; returns `path`."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = Path(path)
    check_plot_path(path)
    fig = Figure(figsize=(10, 7.5), dpi=100, layout="constrained")
    axes = fig.subplots(3, 1, sharex=True, height_ratios=(3, 3, 2))
    minutes = timeline.time_s / 60
    for ax in axes:
        _shade(ax, timeline)
    _draw_levels(axes[0], minutes, timeline)
    _draw_wheels(axes[1], minutes, timeline)
    _draw_actions(axes[2], minutes, timeline)
    axes[2].set_xlim(0.0, max(minutes[-1], 1e-9))
    per_orbit = timeline.orbit_period_s / 60
    top = axes[0].secondary_xaxis(
        "top", functions=(lambda m: m / per_orbit, lambda o: o * per_orbit)
    )
    top.set_xlabel("orbits")
    fig.suptitle(_title(timeline), fontsize=11)
    fig.legend(
        handles=[
            Patch(color=ECLIPSE_COLOUR, alpha=0.3, label="eclipse"),
            Patch(color=GROUND_STATION_COLOUR, alpha=0.2, label="ground station in view"),
        ],
        loc="outside lower center",
        ncols=2,
        fontsize=9,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
