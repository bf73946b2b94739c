"""What a capture returns: :class:`CaptureResult` (one image) and :class:`BatchResult`.

Both hold references to the stored outputs on the model's device and convert one layer
to a CPU float32 tensor when it is read.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch

from featurescope.core.capture.layers import LayerInfo


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float


class CaptureResult:
    """The outputs of the captured layers for one input.

    ``.layers`` names in network order; ``result[name]`` -> (C, H, W) float32 CPU tensor
    (converted on demand; for a CPU float32 capture it is the stored tensor itself, an
    inference tensor that refuses in-place changes, so clone it to modify it);
    ``name in result``; ``.info[name]`` -> LayerInfo; ``.logits`` (num_classes,) CPU
    float32 tensor or None (stopped early, or an output that is not (1, N));
    ``.dense`` a detector's boxes or a segmenter's class map
    (:class:`~featurescope.core.capture.dense.DenseOutput`), else None;
    ``.input`` the (1, 3, H, W) CPU tensor fed; ``.categories``; ``.model_name``;
    ``.device``; ``.predictions(top=5)``; ``.raw(name)`` the stored (1, C, H, W) tensor
    on the model's device.

    Memory budget (see :func:`capture`): ``.missing`` lists layers (network order) that
    were described but not stored to stay within the budget (empty normally);
    ``name in result`` is False for those and ``result[name]`` raises KeyError until
    :func:`capture_missing` returns a result holding them. ``.complete`` is True when
    nothing is missing; ``.storage_dtype`` is torch.float32 or torch.float16;
    ``.notice`` one sentence for the status bar when the budget changed anything, else "".
    Two captures never share tensors: each result owns its outputs.
    """

    def __init__(self, outputs: dict, infos: Sequence[LayerInfo], logits, input_tensor,
                 categories=None, model_name: str = "", device=None, notice: str = "",
                 memory_budget: Optional[int] = None, dense=None):
        self._outputs = outputs
        self.layers: list[str] = [info.name for info in infos]
        self.info: dict[str, LayerInfo] = {info.name: info for info in infos}
        self.logits: Optional[torch.Tensor] = logits
        self.input: torch.Tensor = input_tensor
        self.categories = categories
        self.model_name = model_name
        self.device = device
        self.missing: list[str] = [name for name in self.layers if name not in outputs]
        self.notice = notice
        self.memory_budget = memory_budget
        self.dense = dense
        stored = next(iter(outputs.values()), None)
        self.storage_dtype = stored.dtype if stored is not None else torch.float32

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def stored_bytes(self) -> int:
        """Bytes held by the stored outputs."""
        return sum(t.numel() * t.element_size() for t in self._outputs.values())

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            tensor = self._outputs[name]
        except KeyError:
            if name in self.info:
                raise KeyError(f"{name!r} was not kept within the memory budget; fetch it with "
                               "capture_missing(model, result, [name]).") from None
            raise KeyError(f"{name!r} was not captured; captured layers: "
                           f"{', '.join(self.layers[:8])}{' ...' if len(self.layers) > 8 else ''}") from None
        return tensor[0].to(device="cpu", dtype=torch.float32)

    def raw(self, name: str) -> torch.Tensor:
        """The stored output as captured: (1, C, H, W), on the model's device, its dtype."""
        return self._outputs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._outputs

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"<CaptureResult {self.model_name or 'model'}: {len(self.layers)} layers>"

    def predictions(self, top: int = 5) -> list[Prediction]:
        """The ``top`` classes by softmax probability; labels from ``categories`` or
        "class N". Empty when there are no logits."""
        if self.logits is None:
            return []
        probabilities = torch.softmax(self.logits.double(), dim=0)
        values, indices = torch.topk(probabilities, min(int(top), probabilities.numel()))
        categories = self.categories
        result = []
        for value, index in zip(values.tolist(), indices.tolist()):
            label = categories[index] if categories is not None and index < len(categories) else f"class {index}"
            result.append(Prediction(label=label, index=int(index), probability=float(value)))
        return result


class BatchResult(Mapping):
    """The outputs of the captured layers for a batch of N inputs.

    A mapping layer name -> (N, C, H, W) float32 CPU tensor (converted on demand), in
    network order. ``.layers``, ``.info[name]`` (LayerInfo, shapes without the batch
    dimension), ``.logits`` (N, num_classes) CPU float32 or None (stopped early, or an
    output that is not (N, classes)), ``.input`` the (N, 3, H, W) CPU tensor fed,
    ``.raw(name)`` the stored tensor on the model's device.
    """

    def __init__(self, outputs: dict, infos: Sequence[LayerInfo], logits, input_tensor,
                 model_name: str = "", device=None):
        self._outputs = outputs
        self.layers: list[str] = [info.name for info in infos if info.name in outputs]
        self.info: dict[str, LayerInfo] = {info.name: info for info in infos}
        self.logits: Optional[torch.Tensor] = logits
        self.input: torch.Tensor = input_tensor
        self.model_name = model_name
        self.device = device

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            tensor = self._outputs[name]
        except KeyError:
            raise KeyError(f"{name!r} was not captured; captured layers: "
                           f"{', '.join(self.layers[:8])}{' ...' if len(self.layers) > 8 else ''}") from None
        return tensor.to(device="cpu", dtype=torch.float32)

    def raw(self, name: str) -> torch.Tensor:
        return self._outputs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"<BatchResult {self.model_name or 'model'}: {len(self.input)} inputs, {len(self.layers)} layers>"
