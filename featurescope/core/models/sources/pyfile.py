"""Your own network: ``path/to/file.py:factory`` imported and called.

The file is imported under its own name (kept in ``sys.modules``) so that a pickle which
names that module can find it; any failure becomes a one-sentence ModelError.
"""
from __future__ import annotations

from pathlib import Path

from featurescope.core.errors import ModelError


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
