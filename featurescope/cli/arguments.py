"""argparse types and the shared model options of the ``featurescope`` subcommands.

Pure Python: building the parser for ``--help`` must not import the engine.
"""
from __future__ import annotations

import argparse

from featurescope.core.models.registry import DEFAULT_MODEL


def statistics(text: str) -> tuple[float, ...]:
    """Normalisation values such as ``0.485,0.456,0.406`` (one per input channel) or
    ``0.1307`` (one for every channel); core checks the count against the model."""
    from featurescope.core.errors import ModelError
    from featurescope.core.models.spec import parse_statistics

    try:
        values = parse_statistics(text)
    except ModelError as error:
        raise argparse.ArgumentTypeError(str(error).rstrip(".")) from None
    if values is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not numbers such as 0.485,0.456,0.406 or 0.5")
    return values


def input_size(text: str):
    """``224`` -> 224, ``32,32`` or ``32x32`` -> (32, 32)."""
    parts = [p for p in text.lower().replace("x", ",").split(",") if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 224 or 32,32") from None
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 224 or 32,32")
    return values[0] if len(values) == 1 else (values[0], values[1])


def _two_ints(text: str, parts: list[str], example: str) -> tuple[int, int]:
    try:
        first, second = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {example}") from None
    return first, second


def window_size(text: str) -> tuple[int, int]:
    """``1280x800`` -> (1280, 800)."""
    width, height = _two_ints(text, text.lower().split("x"), "a size such as 1280x800")
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 1280x800")
    return width, height


def position(text: str) -> tuple[int, int]:
    """``10,12`` -> (10, 12): a row and a column, 0 or more."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    y, x = _two_ints(text, parts, "a position such as 10,12 (row, column)")
    if y < 0 or x < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more in both row and column")
    return y, x


def channel_list(text: str) -> list[int]:
    """``3,17,40`` or ``0-7`` (or both) -> channel numbers, 0 or more."""
    channels = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, dash, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if dash else lo
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of channels such as 3,17 or 0-7") from None
        if lo < 0 or hi < lo:
            raise argparse.ArgumentTypeError(f"{part!r} is not a channel range such as 0-7")
        channels.extend(range(lo, hi + 1))
    if not channels:
        raise argparse.ArgumentTypeError("name at least one channel, such as 3 or 0-7")
    return channels


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    """A whole number of 0 or more."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (seconds, a rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number above 0")
    return value


def frame_rate(text: str) -> float:
    """Frames per second a written video can hold (both codecs play it back as written)."""
    from featurescope.core.io.videos import FPS_RANGE

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of frames per second") from None
    if not FPS_RANGE[0] <= value <= FPS_RANGE[1]:
        raise argparse.ArgumentTypeError(f"{text!r} is outside {FPS_RANGE[0]:g} to {FPS_RANGE[1]:g} "
                                         "frames per second, the rates .mp4 and .avi hold")
    return value


def add_preprocessing_options(group) -> None:
    """--input-size, --mean and --std on ``group`` (a parser or an argument group)."""
    group.add_argument("--input-size", type=input_size, metavar="N|H,W",
                       help="input size (default: the model's own; 224 for your own model)")
    group.add_argument("--mean", type=statistics, metavar="V[,V...]",
                       help="normalisation mean, one value per input channel or one for all "
                            "(default: the model's own; ImageNet for your own model)")
    group.add_argument("--std", type=statistics, metavar="V[,V...]",
                       help="normalisation standard deviation, one value per input channel or "
                            "one for all (default: the model's own; ImageNet for your own model)")


def add_model_options(parser: argparse.ArgumentParser, *, weights_default: str = "default",
                      device: bool = True, custom: bool = True) -> None:
    """The "model" option group: --model, --weights, and optionally --device and the
    options a model of the user's own needs (--input-size, --mean, --std, --trust-pickle)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", "-m", default=DEFAULT_MODEL, metavar="M",
                       help=f"a name from `featurescope models`, timm:NAME, path/to/model.onnx or "
                            f"path/to/file.py:factory "
                            f"(default: {DEFAULT_MODEL}, pretrained, no download)")
    group.add_argument("--weights", "-w", default=weights_default, metavar="W",
                       help="default (pretrained), none (random, untrained) or a state-dict file "
                            + (f"(default: {weights_default})" if weights_default else
                               "(default: none, since the layers do not depend on the weights)"))
    if device:
        group.add_argument("--device", "-d", default="auto", metavar="D",
                           help="auto (CUDA, then MPS, else CPU), cpu, cuda, cuda:N or mps (default: auto)")
    if custom:
        add_preprocessing_options(group)
        group.add_argument("--trust-pickle", action="store_true",
                           help="allow --weights to be a whole pickled model (torch.save(model)); "
                                "unpickling runs code from the file, so only for files you trust")
