"""The preprocessing an index used, and boxes mapped back through it to the original.

Every model featurescope loads resizes the shorter side to ``resize`` and centre-crops
``crop`` (torchvision's ``ImageClassification`` and our ``ImageTransform`` alike). A
receptive-field box in network-input pixels is shifted by the crop's offset, scaled by
original / resized size, rounded outwards and clipped to the original image.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

from featurescope.core.errors import ModelError


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to ``resize``, crop
    the centre ``crop`` (H, W), then normalise with ``mean`` / ``std``."""

    resize: int
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    channels: int = 3  # 1 grey, 3 RGB, 4 RGBA: the photo is converted first

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(int(data["resize"]), tuple(int(v) for v in data["crop"]),
                   tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]),
                   str(data.get("interpolation", "bilinear")), int(data.get("channels", 3)))

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) after the resize, as torchvision computes it for an int size."""
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)

    def crop_offset(self, height: int, width: int) -> tuple[int, int]:
        """(top, left) of the centre crop in the resized image (negative when it pads)."""
        rh, rw = self.resized_size(height, width)
        ch, cw = self.crop
        return int(round((rh - ch) / 2.0)), int(round((rw - cw) / 2.0))

    def crop_in_original(self, height: int, width: int) -> tuple[float, float, float, float]:
        """(top, left, bottom, right) of the centre crop (what the network sees) in the
        original ``height`` x ``width`` image's pixels, unrounded and unclipped (it reaches
        past the edges when the crop pads)."""
        rh, rw = self.resized_size(height, width)
        oy, ox = self.crop_offset(height, width)
        sy, sx = height / rh, width / rw
        return (oy * sy, ox * sx, (oy + self.crop[0]) * sy, (ox + self.crop[1]) * sx)

    def to_original(self, box, height: int, width: int) -> tuple[int, int, int, int]:
        """``box`` (top, left, bottom, right; ends exclusive) in network-input pixels as
        pixels of the original ``height`` x ``width`` image, rounded outwards and clipped."""
        top, left, bottom, right = box
        rh, rw = self.resized_size(height, width)
        oy, ox = self.crop_offset(height, width)
        sy, sx = height / rh, width / rw
        y0 = math.floor((top + oy) * sy + 1e-9)
        x0 = math.floor((left + ox) * sx + 1e-9)
        y1 = math.ceil((bottom + oy) * sy - 1e-9)
        x1 = math.ceil((right + ox) * sx - 1e-9)
        return (min(max(y0, 0), height), min(max(x0, 0), width),
                min(max(y1, 0), height), min(max(x1, 0), width))


def _interpolation_name(value) -> str:
    return str(getattr(value, "value", value) or "bilinear").lower()


def preprocessing_of(model) -> Preprocessing:
    """The resize / crop / normalisation that ``model`` (a LoadedModel) applies.

    Raises ModelError when its preprocessing is not a resize and centre crop, since the
    boxes could not then be mapped back to the original images.
    """
    transform = getattr(model, "transform", None) or getattr(model, "_transform", None)
    mean = tuple(getattr(model, "mean", (0.485, 0.456, 0.406)))
    std = tuple(getattr(model, "std", (0.229, 0.224, 0.225)))
    resize: Optional[int] = None
    crop = tuple(getattr(model, "input_size", None) or (224, 224))
    if transform is not None and hasattr(transform, "resize_size"):  # torchvision
        resize = int(transform.resize_size[0])
        size = transform.crop_size
        crop = (int(size[0]), int(size[-1]))
    elif transform is not None and hasattr(transform, "resize"):  # core.models.load.ImageTransform
        resize = int(transform.resize)
        crop = (int(transform.crop[0]), int(transform.crop[1]))
    if resize is None:
        raise ModelError(f"{getattr(model, 'name', 'this model')}'s preprocessing is not a resize "
                         "and centre crop, so an index cannot map its boxes back to the images.")
    interpolation = _interpolation_name(getattr(transform, "interpolation", "bilinear"))
    return Preprocessing(resize, (int(crop[0]), int(crop[1])),
                         tuple(float(v) for v in mean), tuple(float(v) for v in std), interpolation,
                         int(getattr(model, "channels", 3) or 3))


_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class PreprocessTransform:
    """The model's transform as a picklable callable for DataLoader workers and Ray
    actors: PIL image -> (C, H, W) float32 tensor, the same steps as the model's."""

    def __init__(self, preprocessing: Preprocessing):
        self.preprocessing = preprocessing

    def __call__(self, image):
        import torch
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        p = self.preprocessing
        image = image.convert(_MODES.get(p.channels, "RGB"))
        image = TF.resize(image, p.resize, interpolation=InterpolationMode(p.interpolation),
                          antialias=True)
        image = TF.center_crop(image, list(p.crop))
        tensor = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float32)
        return TF.normalize(tensor, list(p.mean), list(p.std))
