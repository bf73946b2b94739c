"""ONNX files (``--model path/to/model.onnx``), run by ONNX Runtime.

Why ONNX Runtime and not a conversion to torch: onnx2torch 1.5 cannot convert what
torch 2.14's own exporter writes for a plain torchvision resnet18. With
``torch.onnx.export(dynamo=False)`` the weights come through ``Identity`` nodes (opset
19), with ``dynamo=True`` global pooling becomes ``ReduceMean`` opset 18 (axes as an
input); onnx2torch raises NotImplementedError for both. ONNX Runtime runs every file it
can load, and its results are the reference anyway. The price: no gradients
(``supports_gradients`` is False; Grad-CAM says so in one sentence).

How an edit reaches the later layers (``ablate``): see onnx_session.py, which also runs
graphs exported with a fixed batch one batch at a time.

How capture sees the layers: the graph is run once with the input and output of every
2-D ``Conv``, ``MaxPool``, ``AveragePool``, ``GlobalAveragePool`` and
``GlobalMaxPool`` node (and ``ReduceMean``/``ReduceMax`` over H and W with kept
dimensions, dynamo's global pooling) added as extra graph outputs. ``OnnxNetworkModule`` is an
``nn.Module`` whose children are stand-ins of the matching torch classes (``Conv2d``
with the node's kernel, stride, padding, groups and weights, so the filter view works;
``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d(1)``, ...). After the run, each
stand-in is called in graph order on its node's input and returns its node's output, so
capture's wrappers see each layer as for any torch model, with the tensor objects
connected as in the graph. Layer names come from the node names (``/layer1/layer1.0/
conv1/Conv`` -> ``layer1_0_conv1``).

Input size and channels come from the graph's input shape (N, C, H, W) where it is
fixed; otherwise 224 and 3, overridable with ``input_size``; mean and std are ImageNet's
unless given. A graph whose output is (N, 1000) is taken to give ImageNet's classes.
The weights are the file's: ``weights="none"`` loads them too (``featurescope layers``
asks for none), and a separate weights file is refused.
"""
from __future__ import annotations

import re
from pathlib import Path

from featurescope.core.errors import ModelError
from featurescope.core.models.registry import register_source
from featurescope.core.models.spec import DEFAULT_SIZE, ModelSpec, Preprocessing
from featurescope.core.progress import report

CAPTURED_OPS = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                "ReduceMean", "ReduceMax")


def _imports():
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise ModelError(f"Reading ONNX models needs the onnx and onnxruntime packages ({error}); "
                         f"install them with pip install 'featurescope[onnx]'.") from None
    return onnx, onnxruntime


def _attributes(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _layer_name(node, index: int, taken: set) -> str:
    """``/layer1/layer1.0/conv1/Conv`` -> ``layer1_0_conv1``; ``conv_3`` when unnamed."""
    parts = [p for p in node.name.strip("/").split("/") if p]
    if parts and parts[-1].split("_")[0] == node.op_type:
        parts = parts[:-1]
    # torch's exporter repeats the parent in each scope: layer1/layer1.0/conv1
    parts = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    name = re.sub(r"\W", "_", "_".join(parts).replace(".", "_")).strip("_")
    if not name or name[0].isdigit():
        name = f"{node.op_type.lower()}_{index}"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _fed(cls):
    """A subclass of ``cls`` whose forward returns the value ONNX Runtime computed."""
    def forward(self, x):
        return self._feed[self._output]

    return type(f"Onnx{cls.__name__}", (cls,), {"forward": forward, "__module__": __name__})


_STAND_INS: dict = {}


def _stand_in(cls):
    if cls not in _STAND_INS:
        _STAND_INS[cls] = _fed(cls)
    return _STAND_INS[cls]


def _pads(attrs: dict) -> tuple[int, int]:
    pads = list(attrs.get("pads") or [0, 0, 0, 0])
    return (int(pads[0]), int(pads[1]))  # the begin pads (ends differ only for "same" / odd)


def _build_stand_in(node, attrs: dict, constants: dict, shapes: dict):
    """The torch module that plays ``node`` (None for a node that is not 2-D)."""
    import numpy as np
    import torch
    from torch import nn

    op = node.op_type
    if op == "Conv":
        weight = constants.get(node.input[1])
        if weight is None or weight.ndim != 4:
            kernel = attrs.get("kernel_shape")
            if weight is None and kernel is not None and len(kernel) == 2:
                raise ModelError(f"The ONNX Conv node {node.name or node.output[0]} computes its "
                                 f"weights at run time, which featurescope cannot show.")
            return None
        out_ch, in_per_group = weight.shape[:2]
        groups = int(attrs.get("group", 1))
        bias = len(node.input) > 2 and node.input[2] != ""
        module = _stand_in(nn.Conv2d)(
            in_per_group * groups, out_ch, tuple(weight.shape[2:]),
            stride=tuple(attrs.get("strides", (1, 1))), padding=_pads(attrs),
            dilation=tuple(attrs.get("dilations", (1, 1))), groups=groups, bias=bias)
        with torch.no_grad():
            module.weight.copy_(torch.tensor(np.asarray(weight, np.float32)))
            if bias and node.input[2] in constants:
                module.bias.copy_(torch.tensor(np.asarray(constants[node.input[2]], np.float32)))
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
            module.same_padding = True  # layer metadata reports padding "same"
        return module
    if op in ("MaxPool", "AveragePool"):
        kernel = tuple(attrs.get("kernel_shape", ()))
        if len(kernel) != 2:
            return None
        stride = tuple(attrs.get("strides", (1, 1)))
        ceil = bool(attrs.get("ceil_mode", 0))
        if op == "MaxPool":
            return _stand_in(nn.MaxPool2d)(kernel, stride, _pads(attrs),
                                           dilation=tuple(attrs.get("dilations", (1, 1))), ceil_mode=ceil)
        return _stand_in(nn.AvgPool2d)(kernel, stride, _pads(attrs), ceil_mode=ceil,
                                       count_include_pad=bool(attrs.get("count_include_pad", 0)))
    rank = shapes.get(node.input[0])
    if rank is not None and rank != 4:
        return None
    if op.startswith("Reduce"):
        # global pooling as torch's dynamo exporter writes it: a mean (max) over H and W
        # that keeps the dimensions; axes an attribute before opset 18, an input since
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1] in constants:
            axes = [int(a) for a in np.asarray(constants[node.input[1]]).ravel()]
        if not axes or {int(a) % 4 for a in axes} != {2, 3} or not attrs.get("keepdims", 1):
            return None
    cls = nn.AdaptiveAvgPool2d if op in ("GlobalAveragePool", "ReduceMean") else nn.AdaptiveMaxPool2d
    return _stand_in(cls)(1)


def _constants(graph) -> dict:
    """Initializers and Constant node values by name, seen through Identity nodes."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _input_info(graph) -> tuple[str, list]:
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"The ONNX model has {len(inputs)} inputs; featurescope shows models "
                         f"with one image input.")
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, dims


def _ranks(graph) -> dict:
    ranks = {}
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        shape = info.type.tensor_type.shape
        if shape.dim:
            ranks[info.name] = len(shape.dim)
    return ranks


_NETWORK_CLASS = None


def _network_class():
    global _NETWORK_CLASS
    if _NETWORK_CLASS is not None:
        return _NETWORK_CLASS
    from torch import nn

    class OnnxNetworkModule(nn.Module):
        """An ONNX graph run by ONNX Runtime, with a torch stand-in per conv/pool node."""

        def __init__(self, path: Path, model_bytes: bytes, input_name: str, output_name: str,
                     plan: list, stand_ins: dict):
            super().__init__()
            self.path = path
            self._model_bytes = model_bytes
            self._input_name = input_name
            self._output_name = output_name
            self._plan = plan  # [(attribute name, input value name, output value name)]
            self._runner = None
            self._feed: dict = {}
            for name, module in stand_ins.items():
                module._feed = self._feed
                self.add_module(name, module)

        def _run(self, x, cuts=None) -> dict:
            import numpy as np
            import torch

            from featurescope.core.models.sources.onnx_session import OnnxRunner

            if self._runner is None:
                self._runner = OnnxRunner(self._model_bytes, self._input_name, self.path.name)
            array = np.ascontiguousarray(x.detach().float().cpu().numpy())
            cut_arrays = {name: np.ascontiguousarray(value.detach().float().cpu().numpy())
                          for name, value in (cuts or {}).items()}
            results = self._runner.run(array, cut_arrays)
            return {name: torch.from_numpy(value).to(x.device) for name, value in results.items()}

        def forward(self, x):
            if x.device.type == "meta":
                raise RuntimeError("an ONNX model cannot run on the meta device")
            values = self._run(x)
            values[self._input_name] = x
            self._feed.clear()
            self._feed.update(values)
            cuts = {}
            try:
                for attr, input_name, output_name in self._plan:
                    module = getattr(self, attr)
                    computed = values[output_name]
                    out = module(values[input_name])
                    values[output_name] = out  # what capture's wrapper handed on
                    self._feed[output_name] = out
                    if out is not computed:
                        # a sink edited this layer (switched channels off): compute the
                        # rest of the graph again from the edited values
                        cuts[output_name] = out
                        for name, value in self._run(x, cuts).items():
                            if name not in cuts:
                                values[name] = self._feed[name] = value
                return values[self._output_name]
            finally:
                self._feed.clear()

    OnnxNetworkModule.__module__ = __name__
    _NETWORK_CLASS = OnnxNetworkModule
    return OnnxNetworkModule


def build_network(path: Path):
    """An :class:`OnnxNetworkModule` for the ONNX file ``path`` and its (channels, H, W)
    from the graph input (None where not fixed)."""
    onnx, _ = _imports()
    try:
        model = onnx.load(str(path))
    except Exception as error:
        raise ModelError(f"{path.name} is not an ONNX model onnx can read "
                         f"({type(error).__name__}: {error}).") from None
    graph = model.graph
    input_name, dims = _input_info(graph)
    constants = _constants(graph)
    ranks = _ranks(graph)
    ranks[input_name] = len(dims)
    plan, stand_ins, taken, extra = [], {}, set(), []
    for index, node in enumerate(graph.node):
        if node.op_type not in CAPTURED_OPS:
            continue
        module = _build_stand_in(node, _attributes(node), constants, ranks)
        if module is None:
            continue
        name = _layer_name(node, index, taken)
        module._output = node.output[0]
        stand_ins[name] = module
        plan.append((name, node.input[0], node.output[0]))
        extra += [node.input[0], node.output[0]]
    known_outputs = {o.name for o in graph.output}
    for value in dict.fromkeys(extra):
        if value not in known_outputs and value != input_name:
            graph.output.append(onnx.helper.make_empty_tensor_value_info(value))
            known_outputs.add(value)
    output_name = model.graph.output[0].name
    out_dims = [d.dim_value if d.HasField("dim_value") else None
                for d in model.graph.output[0].type.tensor_type.shape.dim]
    network = _network_class()(path, model.SerializeToString(), input_name, output_name, plan, stand_ins)
    network.classes = out_dims[-1] if len(out_dims) == 2 else None
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    shape = tuple(dims[1:4]) if len(dims) == 4 else (None, None, None)
    return network, shape


@register_source
class OnnxSource:
    """``path/to/model.onnx``: an ONNX graph, run by ONNX Runtime."""

    name = "onnx"
    priority = 25

    def claims(self, name: str) -> bool:
        return name.lower().endswith(".onnx")

    def spec(self, name: str) -> ModelSpec:
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"The ONNX file {path} does not exist.")
        _imports()
        found: dict = {}

        def create(mode: str, progress=None, cancel=None, trust_pickle: bool = False):
            report(progress, 0, 0, f"Reading {path.name}")
            network, shape = build_network(path)
            found["shape"] = shape
            return network

        def preprocessing_for(module, base: Preprocessing) -> Preprocessing:
            channels, h, w = found.get("shape", (None, None, None))
            size = (h, w) if h and w else (DEFAULT_SIZE, DEFAULT_SIZE)
            resize = max(size) * 256 // 224 if max(size) >= 64 else max(size)
            return Preprocessing(input_size=size, resize=resize).with_channels(channels or 3)

        def categories_for(module):
            # 1000 scores: ImageNet's classes, in the order every ImageNet model uses
            if getattr(module, "classes", None) == 1000:
                from featurescope.core.models.sources.torchvision import imagenet_categories

                return imagenet_categories()
            return None

        return ModelSpec(name=str(path), source=self.name, create=create, label=path.name,
                         categories_for=categories_for,
                         family="ONNX", default_label="ONNX weights", path=path,
                         supports_gradients=False, weights_files=False, random_init=False,
                         preprocessing_for=preprocessing_for)

