"""What the model form means, without Qt: sizes typed in it, own model files, names
with a source, and the catalogue and devices to offer (gui/docks/model_panel.py shows
them; gui/controllers/model_loading.py loads what they describe)."""
from __future__ import annotations

import re
from typing import Any, Optional


def parse_size(text: str) -> Optional[Any]:
    """'224' -> 224; '32x48' -> (32, 48); '' -> None; ValueError otherwise."""
    text = text.strip().lower()
    if not text:
        return None
    parts = [p for p in text.replace("x", ",").replace(" ", ",").split(",") if p]
    values = [int(p) for p in parts]
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return (values[0], values[1])
    raise ValueError(f"Input size '{text}' should be one number (224) or HxW (32x32).")


#: a model named by its source, typed in the search: "timm:resnet18", "onnx:/path/net.onnx"
SOURCE_NAME = re.compile(r"^[A-Za-z][\w+-]*:(?![\\/])\S+$")


def is_model_file(name: str) -> bool:
    """True for an own model file (``net.py:Net``, ``net.py``): the only kind the input
    size, mean and std of the form apply to."""
    return ".py:" in name or name.endswith(".py")


def catalogue_and_devices() -> tuple[list, list[str]]:
    """The model catalogue and the devices of this machine (imports torch, torchvision)."""
    from featurescope.core.models.devices import available_devices
    from featurescope.core.models.load import catalogue

    return catalogue(), available_devices()
