"""The network after one layer, run on a batch of edited copies of that layer's output.

Integrated gradients (a batch of scaled activations), the deletion check (a batch of
copies with channels switched off) and Ablation-CAM (one copy per channel) all ask the
same thing: what does the rest of the network make of many versions of one layer's
output? Everything before the layer is the same for all of them, so it runs once, for
the photo alone (batch 1): :func:`run_tail` hands the rest of the network a batch of N
edited copies through ``run_with_grad``'s ``replace``. A skip connection from before the
layer (ResNet's identity, a U-Net's encoder map) still carries batch 1 and broadcasts in
an addition; an operation that cannot broadcast (a concatenation, a reshape by the
input's batch size) fails or gives an output of the wrong batch size, and then the photo
is repeated N times and the whole network runs on the batch (the same numbers, the
head's cost N times).

:func:`prepare` is the set-up every analysis here shares: the module in eval mode, the
input tensor on the model's device, the model's name for error sentences.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from featurescope.core.errors import ModelError


@dataclass
class Prepared:
    """A model and one photo, ready to run: ``module`` (the bare network), ``x`` (1, 3,
    H, W) on its device, ``name`` (for sentences), ``categories`` (or None)."""

    module: torch.nn.Module
    x: torch.Tensor
    name: str
    categories: Optional[list]

    def label(self, index: int) -> Optional[str]:
        cats = self.categories
        return cats[index] if cats and 0 <= index < len(cats) else None


def prepare(model, image, what: str) -> Prepared:
    """The module, input tensor and name for ``what`` ("Attribution", "Grad-CAM"...).

    ``model``: a LoadedModel or a bare classification ``nn.Module``; ``image``: a PIL
    image (run through ``model.preprocess``) or a (1, 3, H, W) / (3, H, W) tensor.
    ModelError for a model without gradients (ONNX), with ``what`` in the sentence."""
    from featurescope.core.capture.taps import module_device
    from featurescope.core.models.spec import require_gradients

    require_gradients(model, what)
    module = getattr(model, "module", model)
    name = getattr(model, "name", None) or type(module).__name__
    if isinstance(image, torch.Tensor):
        x = image if image.dim() == 4 else image.unsqueeze(0)
    else:
        preprocess = getattr(model, "preprocess", None)
        if preprocess is None:
            raise TypeError("a plain nn.Module needs a (1, 3, H, W) tensor, not an image")
        x = preprocess(image)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one (1, 3, H, W) input, got shape {tuple(x.shape)}")
    device = getattr(model, "device", None) or module_device(module)
    with torch.inference_mode(False):
        x = x.detach().to(device).clone()  # never an inference tensor
    categories = getattr(model, "categories", None)
    return Prepared(module, x, name, list(categories) if categories else None)


@contextmanager
def eval_mode(module: torch.nn.Module):
    """``module`` in eval mode for the block, its own mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def class_scores(output, model_name: str, what: str) -> torch.Tensor:
    """The (N, classes) scores of a network output, or a ModelError saying why not."""
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]  # e.g. auxiliary heads
    if not isinstance(output, torch.Tensor):
        kind = "a dict" if isinstance(output, dict) else f"a {type(output).__name__}"
        raise ModelError(f"{what} needs a model that outputs class scores; {model_name} returns {kind}.")
    scores = output.flatten(1) if output.dim() == 4 and output.shape[2:] == (1, 1) else output
    if scores.dim() != 2:
        raise ModelError(f"{what} needs a model that outputs class scores; {model_name} "
                         f"returns a tensor of shape {tuple(output.shape)}.")
    return scores


def check_target(target: Optional[int], scores: torch.Tensor, model_name: str) -> int:
    """``target`` checked against the classes of ``scores`` (1, classes); None: the top one."""
    classes = scores.shape[1]
    if target is None:
        return int(scores[0].argmax())
    if not 0 <= int(target) < classes:
        raise ModelError(f"{model_name} has {classes} classes, so class {target} does not exist; "
                         f"choose 0 to {classes - 1}.")
    return int(target)


def check_feature_map(output, layer: str, model_name: str, what: str) -> None:
    """ModelError unless ``output`` is an (N, C, H, W) feature map: a layer without channels."""
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelError(f"{layer!r} in {model_name} does not output a feature map (its output is "
                         f"{shape}, without channels), so {what} cannot use it; choose a convolution "
                         f"or pooling layer.")


def run_layer(prep: Prepared, layer: str, what: str, grad: bool = True):
    """One pass of the photo with ``layer``'s output in the graph: (scores (1, classes),
    activation (1, C, H, W)). ModelError for a layer without channels."""
    from featurescope.core.capture.grad import run_with_grad

    run = run_with_grad(prep.module, prep.x, [layer], model_name=prep.name, grad=grad)
    activation = run.activations[layer]
    check_feature_map(activation, layer, prep.name, what)
    return class_scores(run.output, prep.name, what), activation


def run_tail(prep: Prepared, layer: str, edit: Callable[[torch.Tensor], torch.Tensor], what: str,
             grad: bool = False, read: Optional[Callable] = None):
    """The scores of the network when ``layer``'s output (1, C, H, W) is replaced by
    ``edit(output)`` (N, C, H, W): (scores (N, classes), the edited batch as the rest of
    the network saw it, in the graph when ``grad``). The part before ``layer`` runs once
    when the rest of the network can broadcast it (see the module docstring). ``read``:
    what to read from the network's output instead of class scores, one row per copy (a
    detector's box score, core/analysis/dense_why.py)."""
    from featurescope.core.capture.grad import run_with_grad

    if read is None:
        def read(output):
            return class_scores(output, prep.name, what)
    size = {}

    def replace(output):
        check_feature_map(output, layer, prep.name, what)
        edited = edit(output[:1])  # (in the whole-batch run below, every row is the photo's)
        size["n"] = edited.shape[0]
        return edited

    try:
        run = run_with_grad(prep.module, prep.x, [layer], model_name=prep.name,
                            replace={layer: replace}, grad=grad)
        scores = read(run.output)
        if scores.shape[0] == size.get("n"):
            return scores, run.activations[layer]
    except ModelError as error:
        if "n" not in size:  # failed before the layer: not a broadcasting problem
            raise
        if "does not output a feature map" in str(error):
            raise
    # A skip connection from before the layer did not broadcast: the whole batch.
    n = size["n"]
    run = run_with_grad(prep.module, prep.x.expand(n, *prep.x.shape[1:]), [layer],
                        model_name=prep.name, replace={layer: replace}, grad=grad)
    return read(run.output), run.activations[layer]


def chunks(total: int, size: int):
    """(start, stop) pairs covering range(total) in pieces of at most ``size``."""
    size = max(1, int(size))
    return [(start, min(total, start + size)) for start in range(0, total, size)]
