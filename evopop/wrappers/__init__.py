"""Observation wrappers that make fully observed tasks partially observable, and one that
feeds the previous action and reward back to the agent."""

from evopop.wrappers.pomdp import (
    FlickerObservation,
    MaskVelocity,
    NoisyObservation,
    PrevActionReward,
    WrapperKind,
    WrapperSpec,
    parse_wrappers,
)

__all__ = [
    "FlickerObservation",
    "MaskVelocity",
    "NoisyObservation",
    "PrevActionReward",
    "WrapperKind",
    "WrapperSpec",
    "parse_wrappers",
]
