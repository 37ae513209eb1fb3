"""Self-contained policy files: an agent's policy as TorchScript or ONNX, normaliser and action
mapping included, hidden state as explicit inputs and outputs (see the README's Export section).

Names are loaded on first use: this package imports torch; onnx only when ONNX is written.
"""

from __future__ import annotations

from evopop.lazy import lazy_getattr

_EXPORTS = {
    "ExportError": "evopop.export.formats",
    "ExportFormat": "evopop.export.formats",
    "build_policy": "evopop.export.policy",
    "PolicyMetadata": "evopop.export.writer",
    "export_agent": "evopop.export.writer",
    "read_policy_metadata": "evopop.export.writer",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
