"""A disk cache of feature visualisations, so a second look at a channel is instant.

One PNG and one JSON per (model, weights, layer, channel, settings) in a user cache
folder: ``$FEATURESCOPE_CACHE_DIR/optvis`` if set, else ``$XDG_CACHE_HOME/featurescope/
optvis``, else ``~/.cache/featurescope/optvis`` (``%LOCALAPPDATA%`` on Windows). The
weights are identified by a fingerprint of the parameter values (kept per module
object), so retrained weights under the same file name never show old pictures.
Writes are atomic (a temporary file renamed), so two processes can share the folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import weakref
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from featurescope.core.optvis.render import Visualization, visualize

CACHE_VERSION = 1  # bump when the recipe changes what an image looks like
_FINGERPRINTS: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def default_cache_dir() -> Path:
    """Where visualisations are kept (see the module docstring)."""
    root = os.environ.get("FEATURESCOPE_CACHE_DIR")
    if root:
        return Path(root) / "optvis"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "featurescope" / "optvis"


def fingerprint(module: nn.Module) -> str:
    """A hash of the network's class, parameter names, shapes and values (cached per module)."""
    with _LOCK:
        known = _FINGERPRINTS.get(module)
    if known is not None:
        return known
    digest = hashlib.sha1(type(module).__qualname__.encode())
    with torch.no_grad():
        for name, tensor in list(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            values = tensor.detach().to("cpu")
            if values.is_floating_point():
                values = values.float()  # numpy has no bfloat16
            digest.update(values.contiguous().numpy().tobytes())
    value = digest.hexdigest()[:16]
    with _LOCK:
        _FINGERPRINTS[module] = value
    return value


class OptvisCache:
    """Visualisations on disk: :meth:`get` / :meth:`put` one channel, :meth:`visualize`
    the way :func:`~featurescope.core.optvis.render.visualize` does, computing only the
    channels not yet cached. ``folder`` defaults to :func:`default_cache_dir`."""

    def __init__(self, folder: Optional[os.PathLike] = None):
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def key(self, model, layer: str, channel: int, settings: dict) -> str:
        module = getattr(model, "module", model)
        ident = {"version": CACHE_VERSION, "model": getattr(model, "name", type(module).__name__),
                 "weights": str(getattr(model, "weights_label", "")), "fingerprint": fingerprint(module),
                 "layer": layer, "channel": int(channel), "settings": settings}
        return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.folder / key[:2]
        return folder / f"{key}.png", folder / f"{key}.json"

    def has(self, model, layer: str, channel: int, settings: dict) -> bool:
        """Whether one channel's picture is cached (without reading it)."""
        png, meta = self._paths(self.key(model, layer, channel, settings))
        return png.is_file() and meta.is_file()

    def image_path(self, model, layer: str, channel: int, settings: dict) -> Path:
        """Where one channel's PNG is (or would be) kept."""
        return self._paths(self.key(model, layer, channel, settings))[0]

    def get(self, model, layer: str, channel: int, settings: dict):
        """(image (H, W, 3) uint8, activation) or None when not cached (or unreadable)."""
        from PIL import Image

        png, meta = self._paths(self.key(model, layer, channel, settings))
        try:
            activation = float(json.loads(meta.read_text())["activation"])
            with Image.open(png) as image:
                array = np.asarray(image.convert("RGB"))
        except (OSError, ValueError, KeyError):
            return None
        return array, activation

    def photo(self, model, layer: str, channel: int, settings: dict) -> float:
        """What the best sample photo reached for this channel when it was made (NaN: unknown)."""
        meta = self._paths(self.key(model, layer, channel, settings))[1]
        try:
            return float(json.loads(meta.read_text()).get("photo", float("nan")))
        except (OSError, ValueError, TypeError, AttributeError):
            return float("nan")

    def put(self, model, layer: str, channel: int, settings: dict, image: np.ndarray,
            activation: float, photo: float = float("nan")) -> None:
        """Store one channel's image and activation (atomically; a full disk is ignored:
        the cache is only a shortcut)."""
        from PIL import Image

        png, meta = self._paths(self.key(model, layer, channel, settings))
        try:
            png.parent.mkdir(parents=True, exist_ok=True)
            for path, write in ((png, lambda p: Image.fromarray(image).save(p, format="PNG")),
                                (meta, lambda p: Path(p).write_text(json.dumps(
                                    {"layer": layer, "channel": int(channel),
                                     "activation": float(activation), "photo": float(photo),
                                     "settings": settings})))):
                partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
                write(partial)
                os.replace(partial, path)
        except OSError:
            pass

    def visualize(self, model, layer: str, channels, steps: int = 512, size=None, seed: int = 0,
                  objective: str = "channel", progress=None, cancel=None, **options) -> Visualization:
        """:func:`visualize` through the cache: cached channels are read back, the others
        computed (as one call) and stored. ``.settings["cached"]`` lists the channels that
        came from disk."""
        from featurescope.core.optvis.render import image_size, parse_channels, settings_of
        from featurescope.core.optvis.transforms import Robustness

        chosen = parse_channels(channels)
        robustness = options.get("robustness", Robustness())
        settings = settings_of(steps, image_size(model, size), seed, objective, robustness,
                               options.get("learning_rate", 0.05))
        found = {c: self.get(model, layer, c, settings) for c in dict.fromkeys(chosen)}
        missing = [c for c, hit in found.items() if hit is None]
        if missing:
            made = visualize(model, layer, missing, steps=steps, size=size, seed=seed,
                             objective=objective, progress=progress, cancel=cancel, **options)
            photos = made.photo if made.photo is not None else np.full(len(made.channels), np.nan)
            for c, image, activation, photo in zip(made.channels, made.images, made.activations, photos):
                self.put(model, layer, c, settings, image, float(activation), float(photo))
                found[c] = (image, float(activation))
        images = np.stack([found[c][0] for c in chosen])
        activations = np.array([found[c][1] for c in chosen], dtype=np.float32)
        photo = np.array([self.photo(model, layer, c, settings) for c in chosen], dtype=np.float32)
        settings = dict(settings, cached=[c for c in chosen if c not in missing])
        return Visualization(images, activations, chosen, layer, settings, photo)
