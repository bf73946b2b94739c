"""What a capture is fed and what it reads back: images or tensors in, class scores out."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from featurescope.core.errors import ImageError, ModelError


def is_image(value) -> bool:
    return hasattr(value, "convert") and hasattr(value, "size")


def preprocess(model, image) -> torch.Tensor:
    """(1, C, H, W) from ``model.preprocess(image)``; a bare nn.Module has none."""
    step = None if isinstance(model, nn.Module) else getattr(model, "preprocess", None)
    if step is None:
        raise ModelError("This model has no preprocessing; pass a (1, 3, H, W) tensor instead of an image.")
    x = step(image)
    return x.unsqueeze(0) if x.dim() == 3 else x


def as_input(model, image_or_input) -> torch.Tensor:
    """One image (PIL, preprocessed) or a (1, C, H, W) / (C, H, W) tensor as (1, C, H, W)."""
    if torch.is_tensor(image_or_input):
        x = image_or_input.detach()
    elif is_image(image_or_input):
        x = preprocess(model, image_or_input)
    else:
        raise ImageError(f"capture needs a PIL image or a (1, 3, H, W) tensor, not {type(image_or_input).__name__}.")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ImageError(f"The input tensor has shape {tuple(x.shape)}; capture needs one image as (1, 3, H, W).")
    if not x.is_floating_point():
        x = x.float()
    return x


def as_batch(model, inputs) -> torch.Tensor:
    """PIL images (preprocessed, one size) or an (N, C, H, W) tensor as (N, C, H, W)."""
    if torch.is_tensor(inputs):
        x = inputs.detach()
        if x.dim() != 4 or x.shape[0] < 1:
            raise ImageError(f"The input tensor has shape {tuple(x.shape)}; capture_batch needs (N, C, H, W).")
    else:
        if inputs is None or isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__iter__"):
            given = "one image (pass [image])" if is_image(inputs) else type(inputs).__name__
            raise ImageError(f"capture_batch needs a list of PIL images or an (N, C, H, W) tensor, "
                             f"not {given}.")
        inputs = list(inputs)
        if not inputs:
            raise ImageError("capture_batch needs at least one image.")
        bad = next((i for i in inputs if not is_image(i)), None)
        if bad is not None:
            raise ImageError(f"capture_batch needs PIL images or an (N, C, H, W) tensor, not {type(bad).__name__}.")
        parts = [preprocess(model, image) for image in inputs]
        sizes = {tuple(p.shape[1:]) for p in parts}
        if len(sizes) > 1:
            raise ImageError(f"The images preprocess to different sizes ({', '.join(map(str, sorted(sizes)))}); "
                             "a batch needs one size.")
        x = torch.cat(parts)
    return x if x.is_floating_point() else x.float()


def logits_of(output, batch: int = 1) -> Optional[torch.Tensor]:
    """(batch, classes) CPU float32 from a network output, or None if it is not that."""
    if output is not None and not torch.is_tensor(output):
        output = getattr(output, "logits", None) if not isinstance(output, (tuple, list)) else output[0]
    if not torch.is_tensor(output) or output.dim() < 1 or output.shape[0] != batch:
        return None
    flat = output
    if flat.dim() == 4 and flat.shape[2:] == (1, 1):
        flat = flat.flatten(1)
    if flat.dim() != 2:
        return None
    return flat.detach().to(device="cpu", dtype=torch.float32)
