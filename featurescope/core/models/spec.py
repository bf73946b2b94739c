"""One record per model: how to build it, load its weights, feed it, and name it.

Like torchvision's ``Weights(url, transforms, meta)``, a :class:`ModelSpec` is what a
source (core/models/sources/) knows about one model before anything heavy happens;
:func:`featurescope.core.models.load.load_model` turns it into a LoadedModel.
:class:`Preprocessing` is the model's input: size, the resize before the centre crop,
normalisation and the number of input channels (1 grey, 3 RGB, 4 RGBA).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
# The crop is 0.875 of the resized shorter side (256 for 224), as torchvision evaluates.
CROP_RATIO = 224 / 256


@dataclass(frozen=True)
class Preprocessing:
    """What a model is fed: ``input_size`` (H, W) centre crop of the photo resized so its
    shorter side is ``resize``, scaled to [0, 1], normalised by ``mean``/``std`` (one
    value per input channel), with ``channels`` 1 (grey), 3 (RGB) or 4 (RGBA)."""

    input_size: tuple[int, int] = (DEFAULT_SIZE, DEFAULT_SIZE)
    resize: int = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3
    interpolation: str = "bilinear"  # "bilinear" | "bicubic" | "nearest"

    def with_channels(self, channels: int) -> "Preprocessing":
        """The same preprocessing for a model of ``channels`` inputs: ImageNet statistics
        become their grey average for one channel and gain an alpha (0, 1) for four."""
        if channels == self.channels:
            return self
        mean, std = self.mean, self.std
        if len(mean) == 3 and channels == 1:
            mean, std = (sum(mean) / 3,), (sum(std) / 3,)
        elif len(mean) == 3 and channels == 4:
            mean, std = (*mean, 0.0), (*std, 1.0)
        elif len(mean) == 1:
            mean, std = mean * channels, std * channels
        return replace(self, channels=channels, mean=tuple(mean), std=tuple(std))


@dataclass
class ModelSpec:
    """Everything featurescope knows about one model before building it.

    ``create(weights_mode, progress, cancel, trust_pickle)`` builds the network with
    ``"default"`` weights or randomly initialised (``"none"``, seeded by the caller); a
    state-dict file is then fitted by the loader after ``fix_state``.
    ``preprocessing_for(module)`` reads what only the built module can tell (own models:
    the first convolution's input channels). ``supports_gradients`` is False for sources
    that run outside torch's autograd (ONNX Runtime): views that need gradients refuse
    those with :func:`require_gradients`'s sentence.
    """

    name: str  # what the user asked for; own files: the absolute path ("/abs/net.py:Net")
    source: str  # the registered source: "lite", "torchvision", "pyfile", "timm", "onnx", ...
    create: Callable[..., Any]
    label: str = ""  # the short name shown ("resnet18", "net.py:Net", "timm:resnet18")
    arch: str = ""  # how weights errors name the architecture
    family: str = ""
    default_label: str = "default weights"  # the weights label of "default"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    # the source's own exact transform, used when nothing is overridden (torchvision's)
    transform: Optional[Callable] = None
    categories: Optional[Sequence[str]] = None
    categories_for: Optional[Callable[[Any], Optional[Sequence[str]]]] = None  # from the module
    fix_state: Callable[[dict], dict] = lambda state: state
    supports_gradients: bool = True
    weights_files: bool = True  # whether --weights FILE makes sense for this source
    # False where "none" cannot randomise the network (ONNX: the runtime runs the file's
    # own weights); "none" then loads the default weights, labelled as such
    random_init: bool = True
    path: Optional[Path] = None  # own model files, absolute
    preprocessing_for: Optional[Callable[[Any, "Preprocessing"], "Preprocessing"]] = None
    # what the network outputs: "classification" (class scores), "detection" (boxes) or
    # "segmentation" (a class per pixel)
    task: str = "classification"
    # transform_for(size, mean, std) -> the photo's transform, instead of the resize and
    # centre crop (detectors and segmenters see the whole photo)
    transform_for: Optional[Callable[..., Callable]] = None
    # fit_input(module, (H, W)): tell the built network the input size it will be fed
    fit_input: Optional[Callable[[Any, tuple], None]] = None

    def __post_init__(self) -> None:
        self.label = self.label or self.name
        self.arch = self.arch or self.label


def parse_statistics(text: Union[str, Sequence[float], None], channels: Optional[int] = None,
                     what: str = "mean") -> Optional[tuple[float, ...]]:
    """Normalisation values from ``"0.485,0.456,0.406"``, ``"0.1307"`` or a sequence: one
    value per input channel, or one value for every channel. With ``channels`` the result
    has that many values (one value is repeated); without, it is returned as given.
    None or an empty text gives None. Raises ModelError with a sentence for anything else
    (the CLI and the GUI's model panel both use this)."""
    from featurescope.core.errors import ModelError

    if text is None:
        return None
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", ",").split(",") if p]
        if not parts:
            return None
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise ModelError(f"{what} {text!r} is not numbers such as 0.485,0.456,0.406 (one per "
                             f"input channel) or 0.5 (the same for every channel).") from None
    else:
        values = tuple(float(v) for v in text)
    if not values:
        return None
    if channels is not None and len(values) != channels:
        if len(values) != 1:
            if channels == 1:
                raise ModelError(f"{what} must have 1 value (the model has one input channel), "
                                 f"not {len(values)}.")
            raise ModelError(f"{what} must have {channels} values (one per input channel) or one "
                             f"for all, not {len(values)}.")
        values = values * channels
    if what == "std" and any(v == 0 for v in values):
        raise ModelError("std must not contain 0 (the input would be divided by zero).")
    return values


def require_gradients(model, what: str = "Grad-CAM") -> None:
    """ModelError unless ``model`` (a LoadedModel or a bare module) gives gradients, e.g.
    "Grad-CAM needs gradients, which the ONNX model net.onnx does not give"."""
    from featurescope.core.errors import ModelError

    spec = getattr(model, "spec", None)
    if spec is not None and not spec.supports_gradients:
        kind = {"onnx": "ONNX model "}.get(spec.source, "model ")
        raise ModelError(f"{what} needs gradients, which the {kind}{spec.label} does not give.")


def first_conv_channels(module) -> Optional[int]:
    """``in_channels`` of the first 2-D convolution in ``module`` (definition order), or
    None when it has none."""
    from torch import nn

    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            return int(sub.in_channels)
    return None
