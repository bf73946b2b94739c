"""Model catalogue and loading: what can be looked at, and a network ready to look at.

``load_model`` gives a :class:`LoadedModel`: the network in eval mode on its device, with
the preprocessing it expects, its class names and the layers the app can show.

Weights, one argument everywhere:

- ``"default"``: pretrained ImageNet weights. Embedded for ``efficientnet_lite0``; for
  torchvision models read from the torch hub cache (``cache_path_for(name)``) or
  downloaded into it with progress and cancel (see :mod:`featurescope.core.models.download`,
  whose ``WEIGHTS_URLS`` can point a model at another URL).
- ``"none"``: random initialisation, seeded (the same every time), "untrained".
- a path: a state dict for that architecture, read with ``torch.load(weights_only=True)``;
  a fully pickled module only with ``trust_pickle=True`` (see :mod:`featurescope.core.models.weights`).

Custom networks (``path/to/file.py:factory``) are imported by :mod:`featurescope.core.models.sources.pyfile`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence, Union

from featurescope.core.models.sources import lite
from featurescope.core.models.sources.pyfile import call_factory, import_factory
# cache_path_for, download_url_for and WEIGHTS_URLS are part of this module's API too.
from featurescope.core.models.download import WEIGHTS_URLS, cache_path_for, download, download_url_for
from featurescope.core.errors import ModelError
from featurescope.core.progress import CancelToken, ProgressCallback, check, report
from featurescope.core.models.sources.torchvision import (build_torchvision, check_known, default_weights, family,
                                        torchvision_names)
from featurescope.core.models.weights import densenet_keys, drop_aux, fit_state_dict, read_weights

__all__ = ["CatalogueEntry", "catalogue", "cache_path_for", "download_url_for", "WEIGHTS_URLS",
           "IMAGENET_MEAN", "IMAGENET_STD", "ImageTransform", "LoadedModel", "load_model"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # "resnet50", "efficientnet_lite0"
    family: str  # "ResNet", "VGG", "EfficientNet-Lite", ...
    weights_status: str  # "embedded" | "cached" | "downloadable"
    weights_name: str  # "ResNet50_Weights.IMAGENET1K_V2", "embedded ImageNet"


def catalogue() -> list[CatalogueEntry]:
    """All convolutional classification models: efficientnet_lite0 first, then torchvision's
    CNN families (no ViT/Swin/MaxViT), each with whether its pretrained weights are
    embedded, already in the torch hub cache, or would be downloaded."""
    entries = [CatalogueEntry(lite.NAME, lite.FAMILY, "embedded", lite.WEIGHTS_LABEL)]
    for name in torchvision_names():
        weights = default_weights(name)
        status = "cached" if cache_path_for(name).is_file() else "downloadable"
        entries.append(CatalogueEntry(name, family(name), status, str(weights)))
    return entries


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


class ImageTransform:
    """Resize the shorter side, centre-crop, scale to [0, 1] and normalise; the same steps
    as torchvision's ``ImageClassification``, for any crop size (non-square too)."""

    def __init__(self, crop: tuple[int, int], resize: int, mean, std, interpolation=None):
        from torchvision.transforms import InterpolationMode

        self.crop = crop
        self.resize = resize
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.interpolation = interpolation or InterpolationMode.BILINEAR

    def __call__(self, image):
        import torch
        from torchvision.transforms import functional as TF

        image = TF.resize(image, self.resize, interpolation=self.interpolation, antialias=True)
        image = TF.center_crop(image, list(self.crop))
        tensor = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float32)
        return TF.normalize(tensor, self.mean, self.std)


class LoadedModel:
    """A network ready to look at: ``.module`` (eval mode, on ``.device``), ``.name``,
    ``.weights`` (what was asked), ``.weights_label`` ("IMAGENET1K_V1", "untrained",
    "mynet.pth"), ``.trained``, ``.display_name`` ("vgg16 (untrained)"), ``.device``,
    ``.categories`` (list[str] or None), ``.input_size`` (H, W), ``.mean``/``.std``
    (3-tuples), ``.preprocess(pil)``, ``.deprocess(tensor)``, ``.layer_info``, ``.layers``."""

    def __init__(self, module, name, weights, weights_label, trained, device, categories,
                 transform, input_size, mean, std):
        self.module = module
        self.name = name
        self.weights = weights
        self.weights_label = weights_label
        self.trained = trained
        self.device = device
        self.categories = categories
        self.input_size = input_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        self._transform = transform

    @property
    def display_name(self) -> str:
        return f"{self.name} ({self.weights_label})"

    def __repr__(self) -> str:
        return f"<LoadedModel {self.display_name} on {self.device}>"

    def preprocess(self, image):
        """The (1, 3, H, W) float32 CPU tensor this model is fed for a PIL image."""
        return self._transform(image.convert("RGB")).unsqueeze(0).float()

    def deprocess(self, tensor):
        """Undo the normalisation: a (1, 3, H, W) or (3, H, W) tensor as an (H, W, 3) uint8
        array, the picture the model actually sees."""
        import numpy as np
        import torch

        x = torch.as_tensor(tensor).detach().float().cpu()
        if x.dim() == 4:
            x = x[0]
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        x = (x * std + mean).clamp(0, 1)
        return np.ascontiguousarray((x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())

    @cached_property
    def layer_info(self):
        from featurescope.core.capture.capture import describe_layers

        return describe_layers(self.module, (1, 3, *self.input_size))

    @property
    def layers(self) -> list[str]:
        return [info.name for info in self.layer_info]


def load_model(name_or_path: str, weights: Union[str, os.PathLike] = "default",
               device: str = "auto", progress: Optional[ProgressCallback] = None,
               cancel: Optional[CancelToken] = None, *,
               input_size: Union[int, Sequence[int], None] = None,
               mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
               trust_pickle: bool = False) -> LoadedModel:
    """Load a network with its weights, ready for :func:`featurescope.core.capture.capture.capture`.

    ``name_or_path``: a catalogue name (``featurescope models``) or ``"path/to/file.py:factory"``
    (a function or class in that file returning an ``nn.Module``). ``weights``: ``"default"``,
    ``"none"`` or a path to a state dict (a full pickled module only with
    ``trust_pickle=True``). ``input_size`` (int or (H, W)), ``mean`` and ``std`` override the
    preprocessing (custom models default to 224 and ImageNet statistics). ``progress`` /
    ``cancel`` cover the download of default weights.

    Raises ModelError, WeightsError, DownloadError, DeviceError, or Cancelled.
    """
    import torch

    from featurescope.core.models.devices import resolve_device

    target_device = resolve_device(device)
    asked = weights
    weights_text = str(weights)
    mode = weights_text.lower() if weights_text.lower() in ("default", "none") else "path"
    check(cancel)

    name = str(name_or_path)
    custom = name.endswith(".py") or name.rpartition(":")[0].endswith(".py")
    categories = None
    transform_params = None  # (crop, resize, mean, std, interpolation) when not torchvision's
    tv_transform = None
    state_fixer = None

    # Random initialisation never touches the caller's random state; "none" is seeded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if custom:
            if name.endswith(".py"):
                raise ModelError(f"{name} names a file but not its factory; write "
                                 f"{name}:factory_name.")
            factory, py_module, label = import_factory(name)
            report(progress, 0, 0, f"Building {label}")
            module = call_factory(factory, label)
            if mode == "none":
                for sub in module.modules():
                    if hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()
            categories = getattr(module, "categories", None) or getattr(py_module, "categories", None)
            transform_params = ((224, 224), 256, IMAGENET_MEAN, IMAGENET_STD, None)
            arch = label
            default_label = "factory weights"
        elif name == lite.NAME:
            report(progress, 0, 0, f"Building {name}")
            module = lite.EfficientNetLite0()
            from torchvision.transforms import InterpolationMode

            transform_params = ((lite.INPUT_SIZE,) * 2, lite.RESIZE_SIZE, lite.MEAN, lite.STD,
                                InterpolationMode.BICUBIC)
            categories = list(default_weights("resnet50").meta["categories"])
            state_fixer = lite.convert_state_dict
            arch = name
            if mode == "default":
                state = read_weights(lite.weights_file(), False)
                fit_state_dict(module, state_fixer(state), "the embedded Lite0 weights", arch)
            default_label = lite.WEIGHTS_LABEL
        else:
            check_known(name)
            known_weights = default_weights(name)
            categories = list(known_weights.meta["categories"])
            tv_transform = known_weights.transforms()
            arch = name
            if mode == "default":
                path = cache_path_for(name)
                if not path.is_file():
                    download(download_url_for(name), path, progress, cancel)
                check(cancel)
                report(progress, 0, 0, f"Loading {name} weights")
                state = read_weights(path, trust_pickle)
                if isinstance(state, torch.nn.Module):  # a trusted full pickle
                    module = state
                else:
                    module = build_torchvision(name, pretrained_default=True, init=False)
                    state = densenet_keys(state) if name.startswith("densenet") else state
                    drop_aux(module, state)
                    fit_state_dict(module, state, f"The cached weights {path}", arch)
            else:
                report(progress, 0, 0, f"Building {name}")
                module = build_torchvision(name, pretrained_default=False, init=True)
                if name.startswith("densenet"):
                    state_fixer = densenet_keys
            default_label = known_weights.name

    check(cancel)
    if mode == "default":
        weights_label, trained = default_label, True
    elif mode == "none":
        weights_label, trained = "untrained", False
    else:
        path = Path(weights_text).expanduser()
        report(progress, 0, 0, f"Loading {path.name}")
        loaded = read_weights(path, trust_pickle)
        if isinstance(loaded, torch.nn.Module):  # a trusted full pickle: use it as is
            module = loaded
        else:
            if state_fixer is not None and isinstance(loaded, dict):
                loaded = state_fixer(loaded)
            if isinstance(loaded, dict):
                drop_aux(module, loaded)
            fit_state_dict(module, loaded, path.name, arch)
        weights_label, trained = path.name, True

    # Preprocessing: torchvision's own transforms unless something was overridden.
    if tv_transform is not None and input_size is None and mean is None and std is None:
        transform = tv_transform
        crop = _size_pair(tv_transform.crop_size[0])
        final_mean, final_std = tuple(tv_transform.mean), tuple(tv_transform.std)
    else:
        if tv_transform is not None:
            c = tv_transform.crop_size[0]
            base = ((c, c), tv_transform.resize_size[0], tv_transform.mean, tv_transform.std,
                    tv_transform.interpolation)
        else:
            base = transform_params
        crop = _size_pair(input_size) if input_size is not None else base[0]
        ratio = base[1] / max(base[0])
        resize = int(round(max(crop) * ratio))
        final_mean = tuple(mean) if mean is not None else tuple(base[2])
        final_std = tuple(std) if std is not None else tuple(base[3])
        for label, values in (("mean", final_mean), ("std", final_std)):
            if len(values) != 3:
                raise ModelError(f"{label} must have 3 values (one per RGB channel), not {len(values)}.")
        if any(s == 0 for s in final_std):
            raise ModelError("std must not contain 0 (the input would be divided by zero).")
        transform = ImageTransform(crop, resize, final_mean, final_std, base[4])

    drop_aux(module, None)  # unused in eval; not worth showing or keeping in memory
    module = module.to(target_device).eval()
    report(progress, 1, 1, f"Loaded {name}")
    return LoadedModel(module, name, asked, weights_label, trained, target_device, categories,
                       transform, crop, final_mean, final_std)
