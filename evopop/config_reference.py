"""The README's config reference, generated from the schema so the two cannot drift apart.

`python -m evopop.config_reference --write README.md` rewrites the table between the markers;
a test checks that the README holds exactly what this module generates.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from evopop.config import RunConfig

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def _section(annotation: Any) -> type | None:
    """The model or dataclass behind a field's annotation (looking through `X | None`)."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and (
            issubclass(candidate, BaseModel) or dataclasses.is_dataclass(candidate)
        ):
            return candidate
    return None


def _show(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dataclasses.Field) or value is PydanticUndefined:
        return "—"
    return str(value)


def _fields(section: type) -> list[tuple[str, Any, Any, str]]:
    """(name, annotation, default, description) of a model's or dataclass's fields."""
    if issubclass(section, BaseModel):
        out = []
        for name, info in section.model_fields.items():
            default = info.get_default(call_default_factory=True)
            out.append((name, info.annotation, default, info.description or ""))
        return out
    return [(f.name, f.type, f.default, f.metadata.get("doc", ""))
            for f in dataclasses.fields(section)]


def _variants(annotation: Any) -> list[type[BaseModel]]:
    """The models of a union told apart by `kind` (`evolution.selection`), else []."""
    models = [m for m in typing.get_args(annotation)
              if isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields]
    return models if len(models) > 1 else []


def _union_rows(key: str, default: Any, doc: str,
                variants: list[type[BaseModel]]) -> list[tuple[str, str, str]]:
    """The section, its `kind`, then each variant's own keys (their docs name the kind)."""
    kinds = [_show(m.model_fields["kind"].default) for m in variants]
    out = [(key, "section", doc),
           (f"{key}.kind", _show(default.kind), "one of " + ", ".join(kinds))]
    for model in variants:
        out += [row for row in rows(model, f"{key}.") if row[0] != f"{key}.kind"]
    return out


def rows(section: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every leaf key, depth first."""
    out = []
    for name, annotation, default, doc in _fields(section):
        key = f"{prefix}{name}"
        nested = _section(annotation)
        variants = _variants(annotation)
        if variants:
            out += _union_rows(key, default, doc, variants)
        elif nested is not None and nested is not section:
            out.append((key, "section" if default is not None else "null (section)", doc))
            out += rows(nested, f"{key}.")
        else:
            out.append((key, _show(default), doc))
    return out


def markdown() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {default} | {doc.replace('|', '/')} |" for key, default, doc in rows()]
    return "\n".join(lines)


def with_reference(readme: str) -> str:
    """README text with the generated table between the markers."""
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{markdown()}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="rewrite the reference in this README")
    args = parser.parse_args()
    if args.write:
        args.write.write_text(with_reference(args.write.read_text()))
    else:
        print(markdown())


if __name__ == "__main__":
    main()
