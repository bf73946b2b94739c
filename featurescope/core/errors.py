"""Errors a user can cause and fix.

``str(error)`` is one sentence that names the thing and the problem (and the fix where
there is one). The CLI prints it and exits with status 2; the GUI shows it in the
window. Anything that is not a FeaturescopeError is a bug and may show a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


class FeaturescopeError(Exception):
    """Base class: a user-facing problem, described in one sentence."""


class ImageError(FeaturescopeError):
    """An image file that cannot be opened (missing, empty, truncated, not an image, too big)."""


class ModelError(FeaturescopeError):
    """An unknown model name, a model file that does not define a network, ..."""


class LayerNotRunError(ModelError):
    """A layer that exists but does not run in the forward pass (``conv#3`` of a module
    called twice, a branch the input never takes); ``layer`` names it."""

    def __init__(self, message: str, layer: str):
        super().__init__(message)
        self.layer = layer


class WeightsError(ModelError):
    """Weights that do not exist, do not fit the architecture, or are not safe to load."""


class DownloadError(WeightsError):
    """Pretrained weights that could not be downloaded; says where to put the file by hand."""

    def __init__(self, message: str, url: str = "", cache_path: Optional[Path] = None):
        super().__init__(message)
        self.url = url
        self.cache_path = cache_path


class DeviceError(FeaturescopeError):
    """A device that does not exist here (``cuda`` with no GPU, ``cuda:3`` with one...)."""


class ExportError(FeaturescopeError):
    """A file that cannot be written: it exists, the folder is read-only, the disk is full."""


class FileExistsExportError(ExportError):
    """The target exists and overwriting was not allowed; carries the path so a GUI can ask."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


class IndexFileError(FeaturescopeError):
    """A dataset index that cannot be read, built or continued, or a question it cannot answer."""


class OptvisError(FeaturescopeError):
    """A feature visualisation that cannot be made as asked (objective, channels, size, a
    network that gives no gradients)."""

class VideoError(FeaturescopeError):
    """A video that cannot be read (missing, not a video, truncated) or written (codec)."""


class CameraError(VideoError):
    """No camera, a camera that does not open, or one another program holds."""
