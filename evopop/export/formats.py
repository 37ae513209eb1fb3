"""The policy file formats and the export error: light (no torch), for the command line."""

from __future__ import annotations

from enum import Enum

from evopop.errors import UserError


class ExportError(UserError):
    """An agent or request that cannot be exported (space, format, missing package)."""


class ExportFormat(str, Enum):
    """Policy file formats `export_agent` writes."""

    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"

    @property
    def suffix(self) -> str:
        """The file suffix a policy of this format gets when no name is given."""
        return ".pt" if self is ExportFormat.TORCHSCRIPT else ".onnx"


def parse_format(fmt: ExportFormat | str) -> ExportFormat:
    """`fmt` as a format, or one line naming the ones there are."""
    try:
        return ExportFormat(fmt)
    except ValueError:
        valid = " or ".join(f.value for f in ExportFormat)
        raise ExportError(f"unsupported export format {fmt!r}: use {valid}") from None
