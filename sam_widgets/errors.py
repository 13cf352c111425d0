"""Exceptions a user can act on: one type per failure, the fix in the message."""

from __future__ import annotations

__all__ = [
    "SamWidgetsError",
    "CheckpointError",
    "DownloadError",
    "ChecksumError",
    "OfflineError",
    "MirrorURLError",
    "ArchitectureMismatchError",
    "AnnotationFileError",
    "ImageMismatchError",
    "ExportError",
    "ExportFolderError",
    "MissingMaskError",
]


class SamWidgetsError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointError(SamWidgetsError):
    """A checkpoint could not be obtained or is not usable."""


class DownloadError(CheckpointError):
    """Fetching a checkpoint failed (HTTP error, timeout, HTML page, truncated body, disk full)."""


class ChecksumError(CheckpointError):
    """A file's sha256 differs from the one pinned in the registry."""


class OfflineError(DownloadError):
    """The file is not cached and the network may not be used (SAM_WIDGETS_OFFLINE=1)."""


class MirrorURLError(DownloadError, ValueError):
    """``SAM_WIDGETS_MIRROR`` is set to something that is not a base URL."""


class ArchitectureMismatchError(CheckpointError):
    """A state dict does not fit the architecture it is being loaded into."""


class AnnotationFileError(SamWidgetsError, ValueError):
    """A saved annotations folder cannot be used: missing, damaged, or from an unknown version."""


class ImageMismatchError(AnnotationFileError):
    """A saved annotations folder belongs to other images (names or sizes differ)."""


class ExportError(SamWidgetsError, ValueError):
    """An export cannot be done as asked (an unknown format); nothing was written."""


class ExportFolderError(ExportError):
    """The export folder holds files an export did not write, or cannot be written; nothing was written."""


class MissingMaskError(ExportError):
    """An object to export has no mask (or an empty one); nothing was written."""
