"""The kernel playground: a hand-made kernel applied to the student's photo, the output
size formula with the numbers filled in, a pooling stage, and the network's own
first-layer filters ranked by how much they look like the hand-made kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from featurescope.core.errors import ModelError

_GAUSS5 = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
PRESETS_3 = {
    "Sobel x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "Sobel y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "Laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "Box blur": (np.ones((3, 3)) / 9).tolist(),
    "Gaussian blur": (np.outer([1, 2, 1], [1, 2, 1]) / 16).tolist(),
    "Sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "Emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "Identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
}
PRESETS_5 = {
    "Sobel x": [[-1, -2, 0, 2, 1], [-4, -8, 0, 8, 4], [-6, -12, 0, 12, 6], [-4, -8, 0, 8, 4],
                [-1, -2, 0, 2, 1]],
    "Sobel y": None,  # the transpose of Sobel x
    "Laplacian": [[0, 0, 1, 0, 0], [0, 1, 2, 1, 0], [1, 2, -16, 2, 1], [0, 1, 2, 1, 0], [0, 0, 1, 0, 0]],
    "Box blur": (np.ones((5, 5)) / 25).tolist(),
    "Gaussian blur": _GAUSS5.tolist(),
    "Sharpen": None,  # identity x 2 - Gaussian
    "Emboss": [[-2, -1, -1, 0, 0], [-1, -2, -1, 0, 0], [-1, -1, 1, 1, 1], [0, 0, 1, 2, 1], [0, 0, 1, 1, 2]],
    "Identity": None,
}
PRESET_NAMES = tuple(PRESETS_3)


def preset(name: str, size: int = 3) -> np.ndarray:
    """The ``size`` x ``size`` (3 or 5) kernel called ``name`` (one of PRESET_NAMES)."""
    if name not in PRESETS_3:
        raise ValueError(f"no preset {name!r}; presets: {', '.join(PRESET_NAMES)}")
    if size == 3:
        return np.asarray(PRESETS_3[name], dtype=np.float64)
    if size != 5:
        raise ValueError(f"kernels are 3x3 or 5x5, not {size}x{size}")
    identity = np.zeros((5, 5))
    identity[2, 2] = 1
    if name == "Sobel y":
        return np.asarray(PRESETS_5["Sobel x"], dtype=np.float64).T.copy()
    if name == "Sharpen":
        return 2 * identity - _GAUSS5
    if name == "Identity":
        return identity
    return np.asarray(PRESETS_5[name], dtype=np.float64)


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """floor((n + 2p - d(k - 1) - 1) / s) + 1, the size of a conv or pooling output."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def size_formula(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> str:
    """The output-size formula with the numbers filled in."""
    out = output_size(size, kernel, stride, padding, dilation)
    return (f"floor(({size} + 2x{padding} - {dilation}x({kernel} - 1) - 1) / {stride}) + 1 = {out}")


@dataclass
class PlaygroundOutput:
    """``convolved`` (H1, W1) the kernel's output, ``pooled`` (H2, W2) after pooling
    (None without a pooling stage); the formulas with the numbers filled in."""

    convolved: np.ndarray
    pooled: Optional[np.ndarray]
    conv_formula: str
    pool_formula: str


def grey(picture: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 picture as (H, W) float grey in 0..1 (Rec. 601 luma)."""
    rgb = np.asarray(picture, dtype=np.float64) / 255.0
    if rgb.ndim == 2:
        return rgb
    return rgb[..., :3] @ np.array([0.299, 0.587, 0.114])


def apply_kernel(image: np.ndarray, kernel, stride: int = 1, padding: int = 0, dilation: int = 1,
                 pool: str = "none", pool_size: int = 2, pool_stride: int = 2) -> PlaygroundOutput:
    """Slide ``kernel`` over ``image`` ((H, W) grey) with zero padding (cross-correlation,
    as a conv layer computes it), then pool ("none", "max" or "average"). Raises
    ModelError when the settings leave no output at all."""
    import torch
    import torch.nn.functional as F

    kernel = np.asarray(kernel, dtype=np.float64)
    height, width = image.shape
    k = kernel.shape[0]
    for size in (height, width):
        if output_size(size, k, stride, padding, dilation) < 1:
            raise ModelError(f"A {k}x{k} kernel with dilation {dilation} does not fit in {size} pixels "
                             f"with padding {padding}; use less dilation or more padding.")
    x = torch.as_tensor(image, dtype=torch.float64)[None, None]
    w = torch.as_tensor(kernel, dtype=torch.float64)[None, None]
    out = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    conv_formula = size_formula(height, k, stride, padding, dilation)
    pooled, pool_formula = None, ""
    if pool != "none":
        h1 = out.shape[-2]
        if output_size(h1, pool_size, pool_stride) < 1 or output_size(out.shape[-1], pool_size, pool_stride) < 1:
            raise ModelError(f"A {pool_size}x{pool_size} pooling window does not fit in the "
                             f"{out.shape[-2]}x{out.shape[-1]} map; use a smaller window.")
        if pool == "max":
            pooled_t = F.max_pool2d(out, pool_size, pool_stride)
        elif pool == "average":
            pooled_t = F.avg_pool2d(out, pool_size, pool_stride)
        else:
            raise ValueError(f"pool must be none, max or average, not {pool!r}")
        pooled = pooled_t[0, 0].numpy()
        pool_formula = size_formula(h1, pool_size, pool_stride)
    return PlaygroundOutput(out[0, 0].numpy(), pooled, conv_formula, pool_formula)


@dataclass
class SimilarFilter:
    """A learned filter like the hand-made kernel: ``channel`` of ``layer``,
    ``similarity`` the cosine (negative: the same pattern with the sign flipped),
    ``kernel`` (kh, kw) the filter summed over its input channels (what it does to a
    grey picture), ``weights`` (C_in, kh, kw) the filter itself."""

    layer: str
    channel: int
    similarity: float
    kernel: np.ndarray
    weights: np.ndarray


def first_conv_layer(model) -> tuple[str, object]:
    """(name, module) of the first convolution the network runs."""
    from featurescope.core.capture.layers import find_layer_module

    infos = getattr(model, "layer_info", None)
    module_root = getattr(model, "module", model)
    if infos is None:
        from featurescope.core.capture.capture import describe_layers

        infos = describe_layers(module_root)
    for info in infos:
        if info.kind == "Conv2d":
            return info.name, find_layer_module(module_root, info.name, getattr(model, "name", ""))[0]
    raise ModelError(f"{getattr(model, 'name', 'The model')} has no convolution layer.")


def similar_filters(model, kernel, top: int = 6, layer: Optional[str] = None) -> list[SimilarFilter]:
    """The first conv layer's filters (or ``layer``'s) ranked by |cosine similarity| to
    ``kernel``; each filter is summed over its input channels (its effect on a grey
    picture, where R = G = B) and the hand kernel resampled to the filter's size when
    they differ. Returns the best ``top``."""
    import torch
    import torch.nn.functional as F

    if layer is None:
        layer, module = first_conv_layer(model)
    else:
        from featurescope.core.capture.layers import find_layer_module

        module = find_layer_module(getattr(model, "module", model), layer, getattr(model, "name", ""))[0]
    weights = module.weight.detach().float().cpu().numpy().astype(np.float64)
    filters = weights.sum(axis=1)  # (C_out, kh, kw)
    kh, kw = filters.shape[1:]
    hand = torch.as_tensor(np.asarray(kernel, dtype=np.float64))
    if hand.shape != (kh, kw):
        hand = F.interpolate(hand[None, None], size=(kh, kw), mode="bilinear", align_corners=True)[0, 0]
    hand = hand.numpy().ravel()
    flat = filters.reshape(len(filters), -1)
    norms = np.linalg.norm(flat, axis=1) * (np.linalg.norm(hand) or 1.0)
    cosine = np.divide(flat @ hand, norms, out=np.zeros(len(flat)), where=norms > 0)
    order = np.argsort(-np.abs(cosine), kind="stable")[:top]
    return [SimilarFilter(layer, int(i), float(cosine[i]), filters[i], weights[i]) for i in order]
