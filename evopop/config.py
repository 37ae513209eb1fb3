"""Run configuration: YAML in, one validated object out, every mistake a one-line `ConfigError`.

Validation happens once, up front, with pydantic (never with `assert`, which `python -O` strips).
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from evopop.errors import UserError, one_line
from evopop.evolution.settings import EvolutionConfig, MutationSettings, RunConfig

__all__ = ["ConfigError", "EvolutionConfig", "MutationSettings", "RunConfig", "load_config",
           "parse_config"]


class ConfigError(UserError):
    """A config problem the user can fix; the message names the key and the fix, on one line
    (a key or a path from the file may carry line breaks)."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


RENAMED_KEYS: dict[str, str] = {
    "workers": "parallel_members",
    "evolution.eval_loop": "eval_episodes",
}
"""Old dotted key -> its new name: an old config gets one line saying what to write instead."""


def _check_renamed(data: dict[str, Any]) -> None:
    for old, new in RENAMED_KEYS.items():
        *parents, leaf = old.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            raise ConfigError(f"config key '{old}' was renamed: write '{new}' instead")


def _closest(word: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(candidates)}"


def _fields(node: Any) -> dict[str, Any]:
    """Fields of a model or dataclass, looking through `X | None`."""
    for candidate in (node, *typing.get_args(node)):
        fields = getattr(candidate, "model_fields", None) or getattr(
            candidate, "__dataclass_fields__", None)
        if fields:
            return fields
    return {}


def _variants(node: Any) -> dict[str, type[BaseModel]]:
    """The models of a union told apart by a `kind` field, by kind (empty for other nodes)."""
    models = [m for m in typing.get_args(node) if isinstance(m, type) and
              issubclass(m, BaseModel) and "kind" in m.model_fields]
    if len(models) < 2:
        return {}
    return {str(getattr(m.model_fields["kind"].default, "value", "")): m for m in models}


def _resolve(loc: tuple[Any, ...]) -> tuple[list[str], Any]:
    """The key path as the user wrote it (pydantic puts a union's tag into its error
    locations) and the section it ends in."""
    node: Any = RunConfig
    path: list[str] = []
    for part in loc:
        variant = _variants(node).get(str(part))
        if variant is not None:
            node = variant
            continue
        path.append(str(part))
        field = _fields(node).get(part)
        node = getattr(field, "annotation", None) or getattr(field, "type", None)
    return path, node


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    path, node = _resolve(loc)
    where = ".".join(path)
    if error["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        _, section = _resolve(loc[:-1])
        return f"unknown config key '{where}'" + _closest(str(loc[-1]), list(_fields(section)))
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        kinds = ", ".join(_variants(node))
        got = error.get("ctx", {}).get("tag")
        return f"{where}: kind must be one of {kinds}" + (f", not '{got}'" if got else "")
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def parse_config(data: dict[str, Any]) -> RunConfig:
    """Validates a config mapping; raises `ConfigError` describing the first problem."""
    _check_renamed(data)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err.errors()[0])) from None


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Applies one `--set a.b=value` override to a raw config mapping."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' is not a section")
    node[leaf] = value


MAX_CONFIG_BYTES = 1 << 20
"""A config is a page of YAML; a larger file is refused before it is parsed."""
MAX_NESTING = 32
"""Deepest nesting of sections and lists a config may have (evopop's own is 4)."""


def _depth(data: Any) -> int:
    """Nesting depth of a parsed YAML value, without recursion."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING and isinstance(node, (dict, list)):
            todo.extend((child, depth + 1) for child in
                        (node.values() if isinstance(node, dict) else node))
    return deepest


def _read_yaml(path: Path) -> Any:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES >> 10} KiB: not a config")
    try:
        data = yaml.safe_load(path.read_text())
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply (at most {MAX_NESTING} levels)") from None
    if _depth(data) > MAX_NESTING:
        raise ConfigError(f"{path} is nested too deeply (at most {MAX_NESTING} levels)")
    return data


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Reads a YAML config, applies dotted overrides, validates."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = _read_yaml(path) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8) YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {path}{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    for key, value in (overrides or {}).items():
        set_key(data, key, value)
    return parse_config(data)


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what a run directory records)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
