"""envpool with only the env families evopop steps registered (classic control).

`import envpool` imports the registration module of every family it ships (Atari, MuJoCo,
Jumanji, Procgen, ...), and those import matplotlib and MuJoCo's Python side: 0.8 s, on the
critical path of a run's first generation (the fork server imports envpool before any member
starts). evopop's `fast` vectorization covers classic control only, so importing this module
puts an empty `envpool.entry` in place before envpool's package imports it and then registers
classic control alone (about 0.1 s against 0.75 s for the whole package, measured
by `python benchmarks/import_time.py`). Where envpool's layout is
not the one this expects, the full import runs instead. Import it before anything imports
envpool; once envpool is loaded, importing this module changes nothing.
"""

from __future__ import annotations

import sys
import types

_ENTRY = "envpool.entry"
_FAMILIES = ("envpool.classic_control.registration",)


def _forget_envpool() -> None:
    for name in [m for m in sys.modules if m == "envpool" or m.startswith("envpool.")]:
        del sys.modules[name]


def _import_lite() -> None:
    import importlib

    if "envpool" in sys.modules:
        return
    sys.modules[_ENTRY] = types.ModuleType(_ENTRY)
    try:
        importlib.import_module("envpool")
        for family in _FAMILIES:
            importlib.import_module(family)
    except ImportError:  # another envpool layout (or none): the package's own import
        _forget_envpool()
        try:
            importlib.import_module("envpool")
        except ImportError:
            _forget_envpool()


_import_lite()
