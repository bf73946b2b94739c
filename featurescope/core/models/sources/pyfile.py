"""Your own network: ``path/to/file.py:factory`` imported and called.

The file is imported under its own name (kept in ``sys.modules``) so that a pickle which
names that module can find it; any failure becomes a one-sentence ModelError. The spec's
name holds the file's absolute path, so a remembered model works from any folder. The
input channels come from the first convolution (1 for MNIST-style nets, 4 for RGBA);
the input size from an ``input_size`` attribute of the network or its file, else 224.
"""
from __future__ import annotations

from pathlib import Path

from featurescope.core.errors import ModelError
from featurescope.core.models.registry import register_source
from featurescope.core.models.spec import (DEFAULT_SIZE, ModelSpec, Preprocessing,
                                           first_conv_channels)
from featurescope.core.progress import report


def import_factory(spec: str):
    """``path/to/file.py:factory`` -> (callable, the imported module, display name)."""
    import importlib.util
    import sys

    file_part, _, attr = spec.rpartition(":")
    path = Path(file_part).expanduser()
    if not attr or not file_part:
        raise ModelError(f"{spec!r} is not path/to/file.py:factory (the factory name is missing).")
    if not path.is_file():
        raise ModelError(f"The model file {path} does not exist.")
    module_name = path.stem if path.stem.isidentifier() else "featurescope_user_model"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise ModelError(f"{path.name} cannot be imported as a Python file.")
    py_module = importlib.util.module_from_spec(spec_obj)
    sys.modules[module_name] = py_module  # so pickles that name this module can find it
    try:
        spec_obj.loader.exec_module(py_module)
    except Exception as error:
        sys.modules.pop(module_name, None)
        raise ModelError(f"Importing {path.name} failed: {type(error).__name__}: {error}.") from None
    factory = getattr(py_module, attr, None)
    if not callable(factory):
        raise ModelError(f"{path.name} has no function or class called {attr!r}.")
    return factory, py_module, f"{path.name}:{attr}"


def call_factory(factory, label: str):
    """``factory()``, which must return an nn.Module; a ModelError naming ``label`` if not."""
    from torch import nn

    try:
        module = factory()
    except Exception as error:
        raise ModelError(f"Calling {label} failed: {type(error).__name__}: {error}.") from None
    if not isinstance(module, nn.Module):
        raise ModelError(f"{label} returned a {type(module).__name__}, not a torch nn.Module.")
    return module


def is_pyfile(name: str) -> bool:
    """Whether ``name`` means a Python file (``net.py`` or ``net.py:factory``)."""
    return name.endswith(".py") or name.rpartition(":")[0].endswith(".py")


def own_preprocessing(module, py_module=None) -> Preprocessing:
    """Preprocessing for a network of one's own: channels from its first convolution,
    size from an ``input_size`` attribute (int or (H, W)) of the network or its file,
    else 224; ImageNet statistics (grey average for one channel)."""
    import sys

    py_module = py_module or sys.modules.get(type(module).__module__)
    size = getattr(module, "input_size", None) or getattr(py_module, "input_size", None) or DEFAULT_SIZE
    try:
        h, w = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[-1]))
    except (TypeError, ValueError, IndexError):
        h = w = DEFAULT_SIZE
    resize = max(h, w) * 256 // 224 if max(h, w) >= 64 else max(h, w)  # small inputs: no crop margin
    base = Preprocessing(input_size=(h, w), resize=resize)
    return base.with_channels(first_conv_channels(module) or 3)


@register_source
class PyFileSource:
    """``path/to/file.py:factory``: a function or class in that file returning an nn.Module."""

    name = "pyfile"
    priority = 20

    def claims(self, name: str) -> bool:
        return is_pyfile(name)

    def spec(self, name: str) -> ModelSpec:
        if name.endswith(".py"):
            raise ModelError(f"{name} names a file but not its factory; write "
                             f"{name}:factory_name.")
        factory, py_module, label = import_factory(name)
        file_part, _, attr = name.rpartition(":")
        path = Path(file_part).expanduser().resolve()

        def create(mode: str, progress=None, cancel=None, trust_pickle: bool = False):
            report(progress, 0, 0, f"Building {label}")
            module = call_factory(factory, label)
            if mode == "none":
                for sub in module.modules():
                    if hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()
            return module

        return ModelSpec(name=f"{path}:{attr}", source=self.name, create=create, label=label,
                         family="Your own", default_label="factory weights",
                         categories=getattr(py_module, "categories", None), path=path,
                         preprocessing_for=lambda module, _base: own_preprocessing(module, py_module))
