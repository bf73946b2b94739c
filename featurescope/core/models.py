"""Model catalogue, weights resolution (embedded / cache / download / file) and loading.

CONTRACT STUB - to be implemented.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogueEntry:
    name: str  # "resnet50", "efficientnet_lite0"
    family: str  # "ResNet", "VGG", "EfficientNet-Lite", ...
    weights_status: str  # "embedded" | "cached" | "downloadable"
    weights_name: str  # "ResNet50_Weights.IMAGENET1K_V2", "embedded ImageNet"


def catalogue():
    """All convolutional classification models: efficientnet_lite0 first, then torchvision's CNN families."""
    raise NotImplementedError


def load_model(name_or_path, weights="default", device="auto", progress=None, cancel=None, *,
               input_size=None, mean=None, std=None, trust_pickle=False):
    """Return a LoadedModel. ``weights``: "default" (pretrained: embedded, hub cache, or
    download with progress/cancel), "none" (seeded random init, "untrained"), or a path
    to a state dict (weights_only=True). ``name_or_path`` may be "file.py:factory"."""
    raise NotImplementedError


class LoadedModel:
    """``.module`` (eval mode, on ``.device``), ``.name``, ``.weights`` (what was asked),
    ``.weights_label`` ("IMAGENET1K_V1", "untrained", "mynet.pth"), ``.trained`` (bool),
    ``.display_name`` ("vgg16 (untrained)"), ``.device`` (torch.device), ``.categories``
    (list[str] or None), ``.input_size`` (H, W), ``.mean``/``.std`` (3-tuples),
    ``.preprocess(pil) -> (1,3,H,W) CPU float tensor``, ``.deprocess(tensor) -> (H,W,3) uint8``,
    ``.layer_info`` list[LayerInfo], ``.layers`` list[str]."""
