"""A whole network pickled with ``torch.save(model)`` (``--model net.pt --trust-pickle``).

Unpickling runs code from the file, so the file is read only with ``trust_pickle=True``
(otherwise the sentence of :func:`~featurescope.core.models.weights.read_weights` says
so); a file that holds a state dict is a weights file, and the sentence says to give an
architecture with it. Preprocessing as for a Python file of one's own.
"""
from __future__ import annotations

from pathlib import Path

from featurescope.core.errors import ModelError
from featurescope.core.models.registry import register_source
from featurescope.core.models.spec import ModelSpec
from featurescope.core.progress import report

SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@register_source
class PickleSource:
    """``path/to/model.pt``: a trusted full-model pickle."""

    name = "pickle"
    priority = 30

    def claims(self, name: str) -> bool:
        return name.lower().endswith(SUFFIXES)

    def spec(self, name: str) -> ModelSpec:
        from featurescope.core.models.sources.pyfile import own_preprocessing

        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"The model file {path} does not exist.")

        def create(mode: str, progress=None, cancel=None, trust_pickle: bool = False):
            from torch import nn

            from featurescope.core.models.weights import read_weights

            report(progress, 0, 0, f"Loading {path.name}")
            module = read_weights(path, trust_pickle)
            if not isinstance(module, nn.Module):
                raise ModelError(
                    f"{path.name} holds a {type(module).__name__} (a state dict?), not a whole "
                    f"network; give its architecture as --model and this file as --weights.")
            if mode == "none":
                for sub in module.modules():
                    if hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()
            return module

        return ModelSpec(name=str(path), source=self.name, create=create, label=path.name,
                         family="Your own", default_label="pickled weights", path=path,
                         preprocessing_for=lambda module, _base: own_preprocessing(module))
