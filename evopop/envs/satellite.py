"""The nadir-scanning satellite of DESIGN.md section 6, built on bsk-rl 1.3.8.

A satellite scans the ground (reward: scanning time), and must keep its battery charged, its
wheels below their speed limit and its buffer downlinked. bsk-rl is optional: nothing here
imports it until an env is built, so `register_satellite_env()` is safe everywhere.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from evopop.envs.bsk_support import ensure_support_data
from evopop.envs.make import EnvError
from evopop.envs.metrics import EPISODE_METRICS_KEY

SATELLITE_ENV_ID = "evopop/ScanningSatellite-v0"
SATELLITE_NAME = "Scanner_1"  # bsk-rl 1.3.8 rejects names that are not Python identifiers
_MB = 8e6  # bits per megabyte: the section-6 numbers are quoted in MB and MB/s


class DesatAttitude(str, Enum):
    """Where the satellite points while dumping wheel momentum."""

    NADIR = "nadir"
    SUN = "sun"


@dataclass(frozen=True)
class ScannerConfig:
    """Every number of DESIGN.md section 6; each field is also a `gym.make` keyword."""

    orbit_period_s: float = 5700.0
    duration_orbits: float = 5.0
    failure_penalty: float = -1.0
    scan_duration_s: float = 180.0
    charge_duration_s: float = 120.0
    downlink_duration_s: float = 60.0
    desat_duration_s: float = 60.0
    data_capacity_bit: float = 5000 * _MB
    initial_storage_fraction: tuple[float, float] = (0.0, 0.8)
    instrument_rate_bit_s: float = 0.5 * _MB
    transmitter_rate_bit_s: float = -50 * _MB
    battery_capacity_ws: float = 200 * 3600.0
    initial_charge_fraction: tuple[float, float] = (0.3, 1.0)
    base_power_w: float = -10.0
    instrument_power_w: float = -30.0
    transmitter_power_w: float = -25.0
    thruster_power_w: float = -80.0
    panel_area_m2: float = 0.25
    attitude_error_requirement: float = 0.1
    rate_error_requirement: float = 0.1
    disturbance_torque_std_nm: float = 1e-4
    max_wheel_speed_rpm: float = 6000.0
    initial_wheel_speed_rpm: float = 3000.0
    desat_attitude: DesatAttitude = DesatAttitude.NADIR
    log_level: str = "ERROR"

    @property
    def duration_s(self) -> float:
        """Episode length; also sets the scanning value (1/duration per second)."""
        return self.duration_orbits * self.orbit_period_s

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> ScannerConfig:
        """Build from env kwargs, naming unknown keys instead of a bare TypeError."""
        valid = {field.name for field in fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise EnvError(
                f"unknown {SATELLITE_ENV_ID} kwargs {unknown} (valid: {', '.join(sorted(valid))})"
            )
        values = dict(kwargs)
        if "desat_attitude" in values:
            try:
                values["desat_attitude"] = DesatAttitude(values["desat_attitude"])
            except ValueError:
                raise EnvError(
                    f"desat_attitude must be one of {[a.value for a in DesatAttitude]}"
                ) from None
        return cls(**values)

    def fixed_sat_args(self) -> dict[str, Any]:
        """bsk-rl `sat_args` that do not change between episodes."""
        return {
            "dataStorageCapacity": self.data_capacity_bit,
            "instrumentBaudRate": self.instrument_rate_bit_s,
            "transmitterBaudRate": self.transmitter_rate_bit_s,
            "batteryStorageCapacity": self.battery_capacity_ws,
            "basePowerDraw": self.base_power_w,
            "instrumentPowerDraw": self.instrument_power_w,
            "transmitterPowerDraw": self.transmitter_power_w,
            "thrusterPowerDraw": self.thruster_power_w,
            "panelArea": self.panel_area_m2,
            "imageAttErrorRequirement": self.attitude_error_requirement,
            "imageRateErrorRequirement": self.rate_error_requirement,
            "maxWheelSpeed": self.max_wheel_speed_rpm,
            "desatAttitude": self.desat_attitude.value,
        }

    def random_sat_args(self, rng: np.random.Generator) -> dict[str, Any]:
        """Per-episode initial state, drawn from the env's own seeded generator."""
        return {
            "storageInit": rng.uniform(*self.initial_storage_fraction) * self.data_capacity_bit,
            "storedCharge_Init": rng.uniform(*self.initial_charge_fraction)
            * self.battery_capacity_ws,
            "wheelSpeeds": rng.uniform(-1, 1, 3) * self.initial_wheel_speed_rpm,
            "disturbance_vector": rng.normal(0.0, self.disturbance_torque_std_nm, 3),
        }


@dataclass(frozen=True)
class EpisodeMetrics:
    """What users watch per episode; put in `info[EPISODE_METRICS_KEY]` when an episode ends."""

    reward: float
    alive: bool
    rw_status_valid: bool
    battery_status_valid: bool
    orbits_completed: float
    reward_per_orbit: float
    failed_orbits_completed: float
    """Orbits completed if the episode failed, else NaN: run logs (`mean_metrics`) then report
    how long failing policies survive, which the overall mean hides once most episodes run to
    the time limit."""


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors in radians, robust to rounding just past +-1."""
    cosine = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.arccos(np.clip(cosine, -1.0, 1.0)))


@cache
def _dynamics_class() -> type:
    """Scanning + ground-station dynamics with the two pointing-error observations."""
    from bsk_rl.sim import dyn

    class ScannerDynamics(dyn.ContinuousImagingDynModel, dyn.GroundStationDynModel):
        """Adds the angles the agent needs to learn when scanning and charging pay off."""

        @property
        def instrument_pointing_error(self) -> float:
            """Boresight-to-nadir angle [rad]: scanning only collects data near zero."""
            nadir_B = self.BN @ -np.asarray(self.r_BN_N)
            return _angle(np.asarray(self.satellite.sat_args["inst_pHat_B"]), nadir_B)

        @property
        def solar_pointing_error(self) -> float:
            """Panel-normal-to-Sun angle [rad]: charging power falls with it."""
            sun_msg = self.world.gravFactory.spiceObject.planetStateOutMsgs[self.world.sun_index]
            sun_N = np.asarray(sun_msg.read().PositionVector) - np.asarray(self.r_BN_N)
            return _angle(np.asarray(self.satellite.sat_args["nHat_B"]), self.BN @ sun_N)

    return ScannerDynamics


def _satellite_class(config: ScannerConfig) -> type:
    """bsk-rl satellite type; specs are class attributes there, so build one per config."""
    from bsk_rl import act, obs, sats
    from bsk_rl.sim import fsw

    per_orbit = config.orbit_period_s
    observation_spec = [
        obs.SatProperties(
            {"prop": "storage_level_fraction"},
            {"prop": "battery_charge_fraction"},
            {"prop": "wheel_speeds_fraction"},
            {"prop": "instrument_pointing_error", "norm": np.pi},
            {"prop": "solar_pointing_error", "norm": np.pi},
        ),
        obs.OpportunityProperties(
            {"prop": "opportunity_open", "norm": per_orbit},
            {"prop": "opportunity_close", "norm": per_orbit},
            type="ground_station",
            n_ahead_observe=1,
        ),
        obs.Eclipse(norm=per_orbit),
        obs.Time(),
    ]
    action_spec = [  # order is the Discrete(4) action index: see SatelliteAction
        act.Scan(duration=config.scan_duration_s),
        act.Charge(duration=config.charge_duration_s),
        act.Downlink(duration=config.downlink_duration_s),
        act.Desat(duration=config.desat_duration_s),
    ]
    attributes = {
        "observation_spec": observation_spec,
        "action_spec": action_spec,
        "dyn_type": _dynamics_class(),
        "fsw_type": fsw.ContinuousImagingFSWModel,
    }
    return type("ScanningSatellite", (sats.AccessSatellite,), attributes)


class SatelliteAction(int, Enum):
    """Meaning of each Discrete(4) action."""

    SCAN = 0
    CHARGE = 1
    DOWNLINK = 2
    DESATURATE = 3


@cache
def _env_class() -> type:
    """SatelliteTasking plus seeded initial states, early data checks and episode metrics."""
    from bsk_rl import SatelliteTasking

    class ScanningSatelliteEnv(SatelliteTasking):
        """One nadir-scanning satellite; see `make_scanning_satellite` for the kwargs."""

        def __init__(self, config: ScannerConfig) -> None:
            from bsk_rl import data, scene

            self.config = config
            satellite = _satellite_class(config)(SATELLITE_NAME, sat_args=config.fixed_sat_args())
            super().__init__(
                satellite,
                scenario=scene.UniformNadirScanning(value_per_second=1.0 / config.duration_s),
                rewarder=data.ScanningTimeReward(),
                sat_arg_randomizer=self._draw_initial_state,
                failure_penalty=config.failure_penalty,
                time_limit=config.duration_s,
                terminate_on_time_limit=True,
                dtype=np.float32,
                log_level=config.log_level,
            )
            self.episode_reward = 0.0

        def _draw_initial_state(self, satellites: list[Any]) -> dict[Any, dict[str, Any]]:
            # bsk-rl seeds self.np_random from reset(seed=...) just before calling this.
            return {sat: self.config.random_sat_args(self.np_random) for sat in satellites}

        def reset(self, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
            self.episode_reward = 0.0
            try:
                return super().reset(seed=seed, options=options)
            except FileNotFoundError as error:
                ensure_support_data(fetch=False)  # names the missing files and the fix
                raise EnvError(f"Basilisk support data: {error}") from None

        def _get_obs(self) -> np.ndarray:
            # bsk-rl 1.3.8 builds float32 spaces but returns float64 arrays; match the space.
            return np.asarray(super()._get_obs(), dtype=np.float32)

        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
            observation, reward, terminated, truncated, info = super().step(int(action))
            self.episode_reward += float(reward)
            if terminated or truncated:
                info[EPISODE_METRICS_KEY] = dataclasses.asdict(self.episode_metrics())
            return observation, float(reward), terminated, truncated, info

        def episode_metrics(self) -> EpisodeMetrics:
            """Metrics of the episode so far (final when called at its end)."""
            dynamics = self.satellite.dynamics
            orbits = self.simulator.sim_time / self.config.orbit_period_s
            alive = bool(self.satellite.is_alive())
            return EpisodeMetrics(
                reward=self.episode_reward,
                alive=alive,
                rw_status_valid=bool(dynamics.rw_speeds_valid()),
                battery_status_valid=bool(dynamics.battery_valid()),
                orbits_completed=orbits,
                reward_per_orbit=self.episode_reward / orbits if orbits > 0 else 0.0,
                failed_orbits_completed=math.nan if alive else orbits,
            )

    return ScanningSatelliteEnv


def make_scanning_satellite(**kwargs: Any) -> gym.Env:
    """Gymnasium entry point: `gym.make(SATELLITE_ENV_ID, duration_orbits=0.2, ...)`.

    Keywords are the `ScannerConfig` fields. Support data is checked first so an offline
    machine gets one actionable line instead of a Basilisk traceback mid-reset.
    """
    config = ScannerConfig.from_kwargs(kwargs)
    if importlib.util.find_spec("bsk_rl") is None:
        raise EnvError(f"{SATELLITE_ENV_ID} needs bsk-rl: pip install 'evopop[space]'")
    ensure_support_data()
    return _env_class()(config)


def register_satellite_env() -> bool:
    """Register `SATELLITE_ENV_ID` if bsk-rl is installed; return whether it is registered.

    Without bsk-rl this does nothing, so the id never appears where it cannot be built.
    """
    if SATELLITE_ENV_ID in gym.registry:
        return True
    if importlib.util.find_spec("bsk_rl") is None:
        return False
    gym.register(id=SATELLITE_ENV_ID, entry_point=f"{__name__}:make_scanning_satellite")
    return True
