"""The native LSTM's and GRU's C loops (`csrc/recurrent.c`), built on first use and cached.

Why at run time: the loops are only fast compiled for the CPU they run on (`-march=native`:
AVX-512 where there is one), which a wheel cannot know, and the source is one small file that
builds in under a second. The build goes to a cache folder under a name that hashes the source,
the compiler, its flags and the CPU, so a changed source or another machine sharing the folder
builds its own copy; it is written under a temporary name and renamed, so processes building at
once never load a torn file. Where no C compiler works, or `EVOPOP_NATIVE=0`, `library()` is
None and torch's cells run instead (`nn.LSTM`/`nn.GRU` for a single agent; in the batched
learner each LSTM member through oneDNN and the GRU as stacked cells, `evopop.batched.cells`).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import stat
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import torch

LOG = logging.getLogger("evopop.agents")

SOURCE = Path(__file__).with_name("csrc") / "recurrent.c"
SWITCH = "EVOPOP_NATIVE"  # "0" turns the C loops off
CACHE_ENV = "EVOPOP_NATIVE_CACHE"  # the folder for built libraries (default ~/.cache/evopop)
FLAG_SETS = (("-O3", "-march=native"), ("-O3",))  # the first that builds is used
BUILD_TIMEOUT_S = 120

_INT, _PTR = ctypes.c_int, ctypes.c_void_p
SIGNATURES = {
    "ep_lstm_forward": [_INT] * 4 + [_PTR] * 7,
    "ep_lstm_backward": [_INT] * 4 + [_PTR] * 11,
    "ep_gru_forward": [_INT] * 4 + [_PTR] * 7,
    "ep_gru_backward": [_INT] * 4 + [_PTR] * 10,
}


NATIVE_MIN_STEPS = 2
"""Sequences of at least this many steps run through the C loops where they are built: LSTM
forward and backward 1.08-1.44x faster than torch's (oneDNN) at every member count (1, 8, 16)
and length (2, 4, 16) measured, one member included (benchmarks/lstm_paths.py, RESULTS.md); GRU
1.6-5.2x faster than the stacked cells and 1.3-5.1x than torch's GRU per member (1, 8, 16
members; lengths 2 and 16). A lone single step stays with torch: preparing the weights costs
more than the step, and a single agent's fused cell op is the path export and inference share.
A stack's LSTM and GRU steps with weights prepared once (`lstm_native_step`, `gru_native_step`:
a group's collection and evaluation) run in C."""


def native_available(x: torch.Tensor) -> bool:
    """Whether the C loops can take `x`: float32 on the CPU, with the library built."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and library() is not None


def native_usable(x: torch.Tensor, steps: int) -> bool:
    """Whether a sequence of `steps` steps of `x` goes through the C loops: long enough
    (`NATIVE_MIN_STEPS`) and `native_available`."""
    return steps >= NATIVE_MIN_STEPS and native_available(x)


class NativeBuildError(RuntimeError):
    """No compiler, or it failed on every flag set."""


@functools.cache
def library() -> ctypes.CDLL | None:
    """The built library with its functions' signatures declared, or None (and one log line
    saying why) where it cannot be built or is switched off."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    try:
        lib = _load(_built())
    except Exception as exc:  # whatever stops the build (no HOME, a bad $CC...): torch's LSTM
        LOG.warning("evopop: the native LSTM and GRU are off (%s); using torch's", exc)
        return None
    for name, argtypes in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
    return lib


def _load(path: Path) -> ctypes.CDLL:
    _check_owned(path)
    try:
        return ctypes.CDLL(str(path))
    except OSError:  # e.g. a file left empty by a power cut: build it again once
        path.unlink(missing_ok=True)
        return ctypes.CDLL(str(_built()))


def _check_owned(path: Path) -> None:
    """Refuses to load a library that another user could have written: a shared or
    world-writable cache folder would otherwise run their code in this process."""
    for item in (path.parent, path):
        info = item.stat()
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise NativeBuildError(f"{item} belongs to another user")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise NativeBuildError(f"{item} is writable by others")


def compiler() -> list[str]:
    """The C compiler command: the first that exists of $CC, the one Python was built with,
    and `cc`."""
    candidates = (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc")
    for candidate in filter(None, candidates):
        command = shlex.split(candidate)
        if command and shutil.which(command[0]) is not None:
            return command
    raise NativeBuildError(f"no C compiler found (tried {', '.join(filter(None, candidates))})")


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "evopop" / "native"


def _cpu() -> str:
    """What a `-march=native` build depends on: the CPU's feature flags where Linux lists
    them, else the machine itself (its name too: no other machine's build is trusted)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()} {platform.node()}"


def _built() -> Path:
    """The library for this source, compiler and CPU: from the cache (the first flag set's
    build, or a later one's where that had failed), or built into it, flag set by flag set."""
    cc, source = compiler(), SOURCE.read_bytes()
    paths = {flags: cache_dir() / f"recurrent-{_key(source, cc, flags)}.so" for flags in FLAG_SETS}
    cached = [path for path in paths.values() if path.exists()]
    if cached:
        return cached[0]
    errors = []
    for flags, path in paths.items():
        error = _compile(cc, flags, path)
        if error is None:
            return path
        errors.append(f"{' '.join(flags)}: {error}")
    raise NativeBuildError(f"{cc[0]} failed: {'; '.join(errors)}")


def _key(source: bytes, cc: list[str], flags: tuple[str, ...]) -> str:
    return hashlib.sha256(repr((source, cc, flags, _cpu())).encode()).hexdigest()[:16]


def _compile(cc: list[str], flags: tuple[str, ...], path: Path) -> str | None:
    """Builds `path` under a temporary name and renames it; the compiler's last error line
    on failure, else None."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        command = [*cc, *flags, "-shared", "-fPIC", "-o", tmp, str(SOURCE), "-lm"]
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return lines[-1] if lines else f"exit code {done.returncode}"
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        return None
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    finally:
        Path(tmp).unlink(missing_ok=True)
