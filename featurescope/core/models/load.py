"""Model catalogue and loading: what can be looked at, and a network ready to look at.

``load_model`` gives a :class:`LoadedModel`: the network in eval mode on its device, with
the preprocessing it expects, its class names and the layers the app can show. Which
source builds a name is the registry's business (:mod:`featurescope.core.models.registry`;
one file per source in core/models/sources/): embedded ``efficientnet_lite0``, torchvision
names, ``timm:NAME``, ``path/to/model.onnx``, ``path/to/file.py:factory`` and trusted
whole-model pickles ``path/to/model.pt``.

Weights, one argument everywhere:

- ``"default"``: the source's pretrained weights. Embedded for ``efficientnet_lite0``; for
  torchvision models read from the torch hub cache (``cache_path_for(name)``) or
  downloaded into it with progress and cancel (see :mod:`featurescope.core.models.sources.torchvision`,
  whose ``WEIGHTS_URLS`` can point a model at another URL); timm's from the Hugging Face
  cache; your own file's as its factory sets them.
- ``"none"``: random initialisation, seeded (the same every time), "untrained".
- a path: a state dict for that architecture, read with ``torch.load(weights_only=True)``;
  a fully pickled module only with ``trust_pickle=True`` (see :mod:`featurescope.core.models.weights`).
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence, Union

from featurescope.core.errors import ModelError
from featurescope.core.progress import CancelToken, ProgressCallback, check, report
from featurescope.core.models.registry import CatalogueEntry, catalogue_entries, resolve
from featurescope.core.models.spec import (IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Preprocessing,
                                           parse_statistics)
from featurescope.core.models.weights import drop_aux, fit_state_dict, read_weights

__all__ = ["CatalogueEntry", "catalogue", "IMAGENET_MEAN", "IMAGENET_STD", "ImageTransform", "LoadedModel", "load_model"]

def catalogue() -> list[CatalogueEntry]:
    """All convolutional classification models: efficientnet_lite0 first, then torchvision's
    CNN families (no ViT/Swin/MaxViT), each with whether its pretrained weights are
    embedded, already in the torch hub cache, or would be downloaded."""
    return catalogue_entries()


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


_IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class ImageTransform:
    """Resize the shorter side, centre-crop, scale to [0, 1] and normalise; the same steps
    as torchvision's ``ImageClassification``, for any crop size (non-square too) and 1, 3
    or 4 channels (the photo is converted to grey or RGBA first).

    Written with Pillow and torch alone, step for step as torchvision's functional
    transforms do them on a PIL image (its ``resize`` is Pillow's, its crop offsets are
    rounded halves, tested equal to torchvision's): importing torchvision costs ~1.5 s of
    the app's start-up (it loads torch._dynamo), and the embedded Lite0 needs nothing else
    from it.
    """

    def __init__(self, crop: tuple[int, int], resize: int, mean, std, interpolation=None,
                 channels: int = 3):
        self.crop = crop
        self.resize = resize
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # "bilinear", "bicubic", "nearest" (or torchvision's InterpolationMode, by its value)
        self.interpolation = str(getattr(interpolation, "value", interpolation) or "bilinear")
        self.channels = channels

    def __call__(self, image):
        import numpy as np
        import torch
        from PIL import Image

        filters = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                   "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
                   "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS}
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        if size != (width, height):
            image = image.resize(size, filters[self.interpolation])
        crop_h, crop_w = self.crop
        if crop_w > image.width or crop_h > image.height:  # torchvision pads with zeros
            padded = Image.new(image.mode, (max(crop_w, image.width), max(crop_h, image.height)))
            left, top = (crop_w - image.width) // 2 if crop_w > image.width else 0, \
                (crop_h - image.height) // 2 if crop_h > image.height else 0
            padded.paste(image, (left, top))
            image = padded
        top = int(round((image.height - crop_h) / 2.0))
        left = int(round((image.width - crop_w) / 2.0))
        image = image.crop((left, top, left + crop_w, top + crop_h))
        array = np.array(image, copy=True)
        tensor = torch.as_tensor(array).reshape(image.height, image.width, -1).permute(2, 0, 1)
        tensor = tensor.to(torch.float32).div(255)
        mean = torch.as_tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return tensor.sub_(mean).div_(std)


class LoadedModel:
    """A network ready to look at: ``.module`` (eval mode, on ``.device``), ``.name``,
    ``.weights`` (what was asked), ``.weights_label`` ("IMAGENET1K_V1", "untrained",
    "mynet.pth"), ``.trained``, ``.display_name`` ("vgg16 (untrained)"), ``.device``,
    ``.categories`` (list[str] or None), ``.input_size`` (H, W), ``.channels`` (1, 3 or 4),
    ``.mean``/``.std`` (one value per channel), ``.preprocess(pil)``, ``.deprocess(tensor)``,
    ``.input_picture(tensor)``, ``.task`` ("classification", "detection" or "segmentation"), ``.layer_info``, ``.layers``, ``.spec`` (the registry's
    record: ``.source``, ``.supports_gradients``, ``.path`` of own files) and ``.source``
    (what to ask for to load it again: own files by absolute path)."""

    def __init__(self, module, name, weights, weights_label, trained, device, categories,
                 transform, input_size, mean, std, spec: Optional[ModelSpec] = None,
                 channels: int = 3):
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
        self.channels = channels
        self.spec = spec
        self._transform = transform

    @property
    def source(self) -> str:
        """The name to load this model again with, from any folder."""
        return self.spec.name if self.spec is not None else self.name

    @property
    def task(self) -> str:
        """"classification", "detection" (boxes) or "segmentation" (a class per pixel)."""
        return self.spec.task if self.spec is not None else "classification"

    @property
    def supports_gradients(self) -> bool:
        return self.spec.supports_gradients if self.spec is not None else True

    @property
    def display_name(self) -> str:
        return f"{self.name} ({self.weights_label})"

    def __repr__(self) -> str:
        return f"<LoadedModel {self.display_name} on {self.device}>"

    def preprocess(self, image):
        """The (1, C, H, W) float32 CPU tensor this model is fed for a PIL image: a colour
        photo is converted to grey for a one-channel model, to RGBA for a four-channel one."""
        mode = _IMAGE_MODES.get(self.channels, "RGB")
        return self._transform(image.convert(mode)).unsqueeze(0).float()

    def _denormalised(self, tensor):
        import torch

        x = torch.as_tensor(tensor).detach().float().cpu()
        if x.dim() == 4:
            x = x[0]
        channels = x.shape[0]
        mean = torch.tensor(self.mean[:channels]).view(-1, 1, 1)
        std = torch.tensor(self.std[:channels]).view(-1, 1, 1)
        x = (x * std + mean).clamp(0, 1)
        return (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    def deprocess(self, tensor):
        """Undo the normalisation: a (1, C, H, W) or (C, H, W) tensor as an (H, W, 3) uint8
        array, the picture the model actually sees (grey repeated for one channel, the
        colour without alpha for four)."""
        import numpy as np

        x = self._denormalised(tensor)
        if x.shape[2] == 1:
            x = np.repeat(x, 3, axis=2)
        return np.ascontiguousarray(x[:, :, :3])

    def input_picture(self, tensor):
        """What the model sees, as a PIL image: "L" (grey) for one channel, "RGB" for
        three, "RGBA" for four; de-normalised."""
        import numpy as np
        from PIL import Image

        x = self._denormalised(tensor)
        if x.shape[2] == 1:
            return Image.fromarray(np.ascontiguousarray(x[:, :, 0]), "L")
        mode = "RGBA" if x.shape[2] == 4 else "RGB"
        return Image.fromarray(np.ascontiguousarray(x[:, :, :len(mode)]), mode)

    @cached_property
    def layer_info(self):
        from featurescope.core.capture.capture import describe_layers

        return describe_layers(self.module, (1, self.channels, *self.input_size), name=self.name)

    @property
    def layers(self) -> list[str]:
        return [info.name for info in self.layer_info]

    @cached_property
    def every_layer_info(self):
        """LayerInfo of every module with a (C, H, W) output (the ``all`` group), in
        network order: what the layer list shows with "every module" on."""
        from featurescope.core.capture.capture import describe_layers

        return describe_layers(self.module, (1, self.channels, *self.input_size), name=self.name,
                               layers="all")

    def find_layer_info(self, name: str):
        """The LayerInfo of layer ``name`` (any module, "name#2" for a second call), or None."""
        for info in self.layer_info:
            if info.name == name:
                return info
        for info in self.every_layer_info:
            if info.name == name:
                return info
        return None


def check_showable(module, label: str) -> None:
    """ModelError when ``module`` has no 2-D convolution or pooling layer for featurescope
    to show, naming what it has instead (1-D or 3-D convolutions, or neither)."""
    from torch import nn

    from featurescope.core.capture.layers import captured_classes

    kinds = {type(sub).__name__ for sub in module.modules()}
    if any(isinstance(sub, captured_classes()) for sub in module.modules()):
        return
    other = sorted(kinds & {"Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose3d", "MaxPool1d",
                            "MaxPool3d", "AvgPool1d", "AvgPool3d", "AdaptiveAvgPool1d",
                            "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool3d"})
    other += [n for n in ("ConvTranspose2d",) if n in kinds]
    if other:
        raise ModelError(f"{label} has only {', '.join(other)} layers, and featurescope shows "
                         f"2-D convolution and pooling layers only (Conv2d, MaxPool2d, "
                         f"AvgPool2d and their adaptive forms).")
    if isinstance(module, nn.Module):
        raise ModelError(f"{label} has no convolution or pooling layer, so there are no feature "
                         f"maps for featurescope to show.")


def load_model(name_or_path: str, weights: Union[str, os.PathLike] = "default",
               device: str = "auto", progress: Optional[ProgressCallback] = None,
               cancel: Optional[CancelToken] = None, *,
               input_size: Union[int, Sequence[int], None] = None,
               mean: Union[str, Sequence[float], None] = None,
               std: Union[str, Sequence[float], None] = None,
               trust_pickle: bool = False) -> LoadedModel:
    """Load a network with its weights, ready for :func:`featurescope.core.capture.capture.capture`.

    ``name_or_path``: a catalogue name (``featurescope models``), ``"timm:NAME"``,
    ``"path/to/model.onnx"``, ``"path/to/file.py:factory"`` (a function or class in that
    file returning an ``nn.Module``) or a whole pickled model ``"path/to/model.pt"`` (with
    ``trust_pickle=True``). ``weights``: ``"default"``, ``"none"`` or a path to a state
    dict (a full pickled module only with ``trust_pickle=True``). ``input_size`` (int or
    (H, W)), ``mean`` and ``std`` (one value per input channel, or one for all) override
    the preprocessing (own models default to 224, their first convolution's channels and
    ImageNet statistics). ``progress`` / ``cancel`` cover the download of default weights.

    Raises ModelError, WeightsError, DownloadError, DeviceError, or Cancelled.
    """
    import torch

    from featurescope.core.models.devices import resolve_device

    target_device = resolve_device(device)
    asked = weights
    weights_text = str(weights)
    mode = weights_text.lower() if weights_text.lower() in ("default", "none") else "file"
    check(cancel)

    spec = resolve(str(name_or_path))
    if mode == "none" and not spec.random_init:
        mode = "default"  # e.g. `featurescope layers` on an ONNX file: its layers are the same
    if mode == "file" and not spec.weights_files:
        raise ModelError(f"{spec.label} carries its own weights; a separate weights file "
                         f"({Path(weights_text).name}) cannot be loaded into it.")
    # Random initialisation never touches the caller's random state; "none" is seeded.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = spec.create(mode, progress, cancel, trust_pickle)

    check(cancel)
    if mode == "default":
        weights_label, trained = spec.default_label, True
    elif mode == "none":
        weights_label, trained = "untrained", False
    else:
        path = Path(weights_text).expanduser()
        report(progress, 0, 0, f"Loading {path.name}")
        loaded = read_weights(path, trust_pickle)
        if isinstance(loaded, torch.nn.Module):  # a trusted full pickle: use it as is
            module = loaded
        else:
            if isinstance(loaded, dict):
                loaded = spec.fix_state(loaded)
                drop_aux(module, loaded)
            fit_state_dict(module, loaded, path.name, spec.arch)
        weights_label, trained = path.name, True
    check_showable(module, spec.label)

    # Preprocessing: the source's own transform unless something was overridden.
    base: Preprocessing = spec.preprocessing
    if spec.preprocessing_for is not None:
        base = spec.preprocessing_for(module, base)
    channels = base.channels
    final_mean = parse_statistics(mean, channels, "mean") or tuple(base.mean)
    final_std = parse_statistics(std, channels, "std") or tuple(base.std)
    if spec.transform_for is not None:  # the whole photo at the input size (detectors)
        crop = _size_pair(input_size) if input_size is not None else _size_pair(base.input_size)
        transform = spec.transform_for(crop, final_mean, final_std)
    elif spec.transform is not None and input_size is None and mean is None and std is None:
        transform = spec.transform
        crop = _size_pair(base.input_size)
    else:
        crop = _size_pair(input_size) if input_size is not None else _size_pair(base.input_size)
        ratio = base.resize / max(base.input_size)
        resize = int(round(max(crop) * ratio))
        for label, values in (("mean", final_mean), ("std", final_std)):
            if len(values) != channels:
                raise ModelError(f"{label} must have {channels} values (one per input channel), "
                                 f"not {len(values)}.")
        transform = ImageTransform(crop, resize, final_mean, final_std, base.interpolation, channels)

    drop_aux(module, None)  # unused in eval; not worth showing or keeping in memory
    if spec.fit_input is not None:
        spec.fit_input(module, crop)
    module = module.to(target_device).eval()
    categories = getattr(module, "categories", None)
    if not (isinstance(categories, (list, tuple)) and all(isinstance(c, str) for c in categories)):
        categories = spec.categories_for(module) if spec.categories_for is not None else spec.categories
    report(progress, 1, 1, f"Loaded {spec.label}")
    return LoadedModel(module, str(name_or_path), asked, weights_label,
                       trained, target_device, list(categories) if categories is not None else None,
                       transform, crop, final_mean, final_std, spec=spec, channels=channels)
