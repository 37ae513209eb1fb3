"""Device names (`cpu`, `cuda`, `cuda:N`, `auto`): checked when a config is read, resolved to a
`torch.device` only when a run or an evaluation starts, so a config written for a GPU machine
still loads (and plots, and resumes with `--device cpu`) on one without. Importing this module
does not import torch (configs validate against it)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from evopop.errors import UserError

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = "cpu, cuda, cuda:N or auto"
_DEVICE = re.compile(r"cpu|auto|cuda(:\d+)?")


class DeviceError(UserError):
    """A device this machine's torch cannot use (e.g. `cuda` without CUDA)."""


def check_device_name(name: str) -> str:
    """The name itself if it is one of `DEVICE_NAMES`; raises `ValueError` (worded by the config
    loader and the CLI) otherwise."""
    if not isinstance(name, str) or not _DEVICE.fullmatch(name):
        raise ValueError(f"device must be {DEVICE_NAMES}, got {name!r}")
    return name


def resolve_device(name: str) -> torch.device:
    """The torch device `name` means on this machine: `auto` is `cuda` when torch sees a GPU,
    else `cpu`; a CUDA device torch cannot use raises `DeviceError`."""
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        _check_cuda(device)
    return device


def _check_cuda(device: torch.device) -> None:
    import torch

    if not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else "sees no GPU"
        raise DeviceError(f"device {str(device)!r}: this torch ({torch.__version__}) {build}; "
                          "use device cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(f"device {str(device)!r}: torch sees {count} GPU(s) "
                          f"(cuda:0..cuda:{count - 1})")
