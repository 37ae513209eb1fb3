"""Observation wrappers that make fully observed tasks partially observable."""

from evopop.wrappers.pomdp import (
    FlickerObservation,
    MaskVelocity,
    NoisyObservation,
    WrapperKind,
    WrapperSpec,
    parse_wrappers,
)

__all__ = [
    "FlickerObservation",
    "MaskVelocity",
    "NoisyObservation",
    "WrapperKind",
    "WrapperSpec",
    "parse_wrappers",
]
