"""sam-widgets: click, see and understand Segment Anything (SAM v1) in Jupyter.

Importing the package does not import torch or ipywidgets; ``CachedPredictor``, ``Session`` and
``SegmentWidget`` are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ArchitectureMismatchError,
    CheckpointError,
    ChecksumError,
    DownloadError,
    OfflineError,
    SamWidgetsError,
)
from .models import ModelFallbackWarning, load_sam

if TYPE_CHECKING:  # pragma: no cover
    from .predictor import CachedPredictor, PredictorStats
    from .session import Session
    from .widget import SegmentWidget

__version__ = "0.1.0"

__all__ = [
    "load_sam",
    "CachedPredictor",
    "PredictorStats",
    "SegmentWidget",
    "Session",
    "ModelFallbackWarning",
    "SamWidgetsError",
    "CheckpointError",
    "DownloadError",
    "ChecksumError",
    "OfflineError",
    "ArchitectureMismatchError",
    "__version__",
]

_LAZY = {
    "CachedPredictor": "predictor",
    "PredictorStats": "predictor",
    "SegmentWidget": "widget",
    "Session": "session",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sam_widgets' has no attribute {name!r}")
