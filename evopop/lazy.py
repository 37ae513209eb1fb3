"""Lazily exported names: a package lists `name -> module` and gets a module `__getattr__`, so
importing it (or a light submodule of it) does not import torch until a heavy name is used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A PEP 562 module `__getattr__` that imports `exports[name]` on first use."""

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return getattr_
