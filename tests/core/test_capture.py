"""Capture: exact outputs (checked against torchvision's feature extractor), layer
metadata, in-place safety, hooks removed, cancel, early stop, predictions."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
import torchvision.models.feature_extraction as tv_fx
from PIL import Image
from torch import nn

from featurescope.core.capture import capture as capture_module
from featurescope.core.capture import taps
from featurescope.core.capture.capture import capture, describe_layers
from featurescope.core.capture.layers import LayerInfo, captured_classes
from featurescope.core.capture.result import CaptureResult
from featurescope.core.errors import ModelError
from featurescope.core.progress import CancelToken, Cancelled


def _without_inplace(model: nn.Module) -> nn.Module:
    """A copy whose in-place modules are not in place: torchvision's feature extractor
    returns the *live* output tensor, which VGG's ReLU(inplace=True) would overwrite."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return twin


def _reference(model: nn.Module, x: torch.Tensor, nodes, monkeypatch) -> dict:
    # torchvision treats its own ops (Conv2dNormActivation, SqueezeExcitation, ...) as
    # leaves, hiding the convs inside; trace through them so every conv is a node.
    monkeypatch.setattr(tv_fx, "_get_leaf_modules_for_ops", lambda: [])
    extractor = tv_fx.create_feature_extractor(_without_inplace(model), return_nodes=list(nodes))
    with torch.no_grad():
        return extractor(x)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("name, size", [
    ("resnet18", 64),
    ("vgg11", 64),  # conv followed by ReLU(inplace=True)
    ("squeezenet1_1", 64),
    ("mobilenet_v3_small", 64),  # SE blocks: adaptive pools, convs on 1x1 maps, Hardswish(inplace)
])
def test_captured_tensors_equal_torchvision_feature_extractor(name, size, monkeypatch):
    model = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(1, 3, size, size)
    result = capture(model, x)
    assert result.layers, name
    expected_types = captured_classes()
    assert len(result.layers) == sum(isinstance(m, expected_types) for m in model.modules())
    reference = _reference(model, x, result.layers, monkeypatch)
    for layer in result.layers:
        got = result[layer]
        assert got.dtype == torch.float32 and got.device.type == "cpu" and got.dim() == 3
        assert torch.equal(got, reference[layer][0]), layer
        assert result.info[layer].output_shape == tuple(got.shape)
    with torch.inference_mode():
        logits = model(x)[0]
    assert torch.equal(result.logits, logits)
    assert _hook_count(model) == 0


class _Reused(nn.Module):
    """A pool called twice, and functional in-place ops on conv outputs that no module
    hook can see (``relu_``, ``+=``)."""

    def __init__(self, functional_inplace: bool = True):
        super().__init__()
        self.functional_inplace = functional_inplace
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = self.conv1(x)
        x = x.relu_() if self.functional_inplace else x.relu()
        x = self.pool(x)
        y = self.conv2(x)
        if self.functional_inplace:
            y += 1.0
        else:
            y = y + 1.0
        y = self.pool(y)
        return self.head(F.adaptive_avg_pool2d(y, 1).flatten(1))


def test_module_called_twice_and_functional_inplace_ops(monkeypatch):
    model = _Reused().eval()
    x = torch.randn(1, 3, 16, 16)
    result = capture(model, x)
    assert result.layers == ["conv1", "pool", "conv2", "pool#2"]
    assert result.info["pool#2"].module_name == "pool"
    assert result.info["pool#2"].output_shape == (6, 4, 4)
    assert [result.info[n].index for n in result.layers] == [0, 1, 2, 3]
    twin = _Reused(functional_inplace=False).eval()
    twin.load_state_dict(model.state_dict())
    # FX names a module's second call "pool_1"; ours is "pool#2".
    reference = _reference(twin, x, ["conv1", "pool", "conv2", "pool_1"], monkeypatch)
    for ours, theirs in zip(result.layers, ["conv1", "pool", "conv2", "pool_1"]):
        assert torch.equal(result[ours], reference[theirs][0]), ours
    # The overwritten layers were found through version counters and are cloned from now on.
    assert taps.CLONE_ON_STORE[model] == {"conv1", "conv2"}
    again = capture(model, x)
    assert torch.equal(again["conv1"], reference["conv1"][0])
    assert result["conv1"].min() < 0  # really the pre-ReLU output
    assert _hook_count(model) == 0


def test_vgg_conv_output_survives_inplace_relu_without_cloning_everything():
    model = torchvision.models.vgg11(weights=None).eval()
    x = torch.randn(1, 3, 32, 32)
    result = capture(model, x)
    conv = result["features.0"]
    assert conv.min() < 0  # a ReLU(inplace=True) follows it: not overwritten
    # Pool outputs are followed by convs only: kept by reference, no copy.
    with torch.inference_mode():
        expected_pool = model.features[:3](x)
    assert torch.equal(result["features.2"], expected_pool[0])


def test_layer_metadata():
    model = torchvision.models.resnet18(weights=None)
    infos = describe_layers(model, (1, 3, 64, 64))
    assert isinstance(infos[0], LayerInfo)
    first = infos[0]
    assert (first.name, first.kind, first.in_channels, first.out_channels) == ("conv1", "Conv2d", 3, 64)
    assert (first.kernel_size, first.stride, first.padding, first.dilation, first.groups) == \
        ((7, 7), (2, 2), (3, 3), (1, 1), 1)
    assert first.input_shape == (3, 64, 64) and first.output_shape == (64, 32, 32)
    assert first.parameters == 64 * 3 * 7 * 7
    pool = infos[1]
    assert (pool.name, pool.kind, pool.kernel_size, pool.stride, pool.padding, pool.parameters) == \
        ("maxpool", "MaxPool2d", (3, 3), (2, 2), (1, 1), 0)
    assert pool.in_channels == pool.out_channels == 64 and pool.output_shape == (64, 16, 16)
    last = infos[-1]
    assert (last.name, last.kind, last.output_size, last.kernel_size) == ("avgpool", "AdaptiveAvgPool2d", (1, 1), None)
    assert [i.index for i in infos] == list(range(len(infos)))
    downsample = next(i for i in infos if i.name == "layer2.0.downsample.0")
    assert downsample.kernel_size == (1, 1) and downsample.parameters == 64 * 128

    depthwise = describe_layers(torchvision.models.mobilenet_v2(weights=None), (1, 3, 32, 32))
    dw = next(i for i in depthwise if i.name == "features.1.conv.0.0")
    assert dw.groups == dw.in_channels == dw.out_channels == 32 and dw.parameters == 32 * 9

    class Same(nn.Conv2d):
        same_padding = True

    net = nn.Sequential(Same(3, 2, 3, dilation=2), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, padding="same"))
    same = describe_layers(net, (1, 3, 12, 12))
    assert [i.kind for i in same] == ["Conv2d", "AvgPool2d", "Conv2d"]  # subclasses count
    assert same[0].padding == "same" and same[0].dilation == (2, 2) and same[2].padding == "same"
    assert same[1].stride == (2, 2) and same[1].parameters == 0
    assert _hook_count(net) == 0


def test_cancel_stops_between_layers_and_removes_hooks():
    model = torchvision.models.resnet18(weights=None)
    token = CancelToken()
    seen = []

    def progress(done, total, text):
        seen.append((done, total, text))
        if done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        capture(model, torch.randn(1, 3, 32, 32), progress=progress, cancel=token)
    assert [s[0] for s in seen] == [1, 2, 3]
    assert seen[0][1] == 22 and seen[0][2] == "conv1"
    assert _hook_count(model) == 0
    with pytest.raises(Cancelled):  # already cancelled: nothing runs
        capture(model, torch.randn(1, 3, 32, 32), cancel=token)


def test_early_stop_after_last_requested_layer():
    model = torchvision.models.resnet18(weights=None)
    calls = []
    model.layer3.register_forward_hook(lambda *a: calls.append("layer3"))
    x = torch.randn(1, 3, 32, 32)
    result = capture(model, x, layers=["layer1.0.conv2", "conv1"])
    assert result.layers == ["conv1", "layer1.0.conv2"]  # network order
    assert "maxpool" not in result and "conv1" in result
    assert calls == []  # the pass stopped before layer3
    assert result.logits is None and result.predictions() == []
    full = capture(model, x)
    assert torch.equal(result["layer1.0.conv2"], full["layer1.0.conv2"])
    assert len(calls) == 1
    with pytest.raises(ModelError, match="no captured layer named 'layer9'"):
        capture(model, x, layers=["layer9"])
    assert _hook_count(model) == 1  # only the test's own hook is left


def test_loaded_model_stand_in_image_predictions_and_half_storage():
    module = torchvision.models.squeezenet1_1(weights=None, num_classes=4).eval()

    def preprocess(image):
        data = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())
        return (data.permute(2, 0, 1) / 255.0).unsqueeze(0)

    loaded = SimpleNamespace(module=module, device=torch.device("cpu"), preprocess=preprocess,
                             categories=["ant", "bee", "cat", "dog"], name="squeezenet1_1",
                             layers=None)
    image = Image.new("RGB", (40, 32), (200, 30, 90))
    result = capture(loaded, image)
    assert isinstance(result, CaptureResult) and result.model_name == "squeezenet1_1"
    assert result.input.shape == (1, 3, 32, 40)
    with torch.inference_mode():
        logits = module(preprocess(image))[0]
    probabilities = torch.softmax(logits.double(), 0)
    predictions = result.predictions(top=3)
    assert [p.index for p in predictions] == torch.argsort(probabilities, descending=True)[:3].tolist()
    assert predictions[0].label == loaded.categories[predictions[0].index]
    assert predictions[0].probability == pytest.approx(probabilities.max().item())
    assert len(result.predictions(top=10)) == 4
    loaded.categories = None
    assert capture(loaded, image).predictions(1)[0].label.startswith("class ")

    half = capture(loaded, image, store_dtype=torch.float16)
    assert half.raw("features.0").dtype == torch.float16
    assert half["features.0"].dtype == torch.float32
    torch.testing.assert_close(half["features.0"], result["features.0"], atol=1e-2, rtol=1e-2)


def test_bad_inputs_are_user_errors():
    model = nn.Sequential(nn.Conv2d(3, 2, 3))
    with pytest.raises(Exception, match="one image"):
        capture(model, torch.zeros(2, 3, 8, 8))
    with pytest.raises(Exception, match="PIL image"):
        capture(model, "cat.jpg")
    assert capture(model, torch.zeros(3, 8, 8)).layers == ["0"]


# --- memory budget, lazy layers, no sharing between captures --------------------------------

def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 4)).eval()


# float32 bytes of the outputs of _small_net at 64 px: conv 8x64x64, pool 8x32x32,
# conv 16x32x32, adaptive pool 16x1x1
SMALL_NET_BYTES = {"0": 131072, "2": 32768, "3": 65536, "4": 64}


def test_memory_budget_float32_then_float16_then_lazy():
    net, x = _small_net(), torch.randn(1, 3, 64, 64)
    full = capture(net, x)
    assert {n: full.raw(n).numel() * 4 for n in full.layers} == SMALL_NET_BYTES
    total = sum(SMALL_NET_BYTES.values())

    roomy = capture(net, x, memory_budget=total)
    assert roomy.complete and roomy.storage_dtype == torch.float32 and roomy.notice == ""
    assert torch.equal(roomy["0"], full["0"])

    half = capture(net, x, memory_budget=total // 2)
    assert half.complete and half.storage_dtype == torch.float16
    assert half.stored_bytes == total // 2 and "float16" in half.notice
    torch.testing.assert_close(half["3"], full["3"], atol=1e-2, rtol=1e-2)

    # Lazy: the first layer, then the smallest that still fit; the rest described only.
    lazy = capture(net, x, memory_budget=70_000)
    assert lazy.layers == full.layers and lazy.info["3"] == full.info["3"]
    assert lazy.missing == ["2", "3"] and not lazy.complete
    assert "0" in lazy and "4" in lazy and "3" not in lazy
    assert lazy.stored_bytes <= 70_000 and "2 of 4 layers" in lazy.notice
    with pytest.raises(KeyError, match="capture_missing"):
        lazy["3"]
    torch.testing.assert_close(lazy.logits, full.logits)  # the pass ran to the end

    fetched = capture_module.capture_missing(net, lazy, ["3"])
    torch.testing.assert_close(fetched["3"], full["3"], atol=1e-2, rtol=1e-2)
    assert fetched.raw("3").dtype == torch.float16
    # within the budget: the layer farthest from the one asked for was dropped
    assert fetched.stored_bytes <= 70_000 and fetched.missing == ["0", "2"]
    assert "0" in lazy and lazy.missing == ["2", "3"]  # the old result is untouched
    assert fetched.input is lazy.input and fetched.logits is lazy.logits
    with pytest.raises(ModelError, match="no captured layer"):
        capture_module.capture_missing(net, lazy, ["9"])


def test_storage_plan_and_estimates():
    from featurescope.core.capture import memory

    net = _small_net()
    infos = describe_layers(net, (1, 3, 224, 224))
    assert memory.estimate_layer_bytes(infos, (224, 224), (64, 64)) == SMALL_NET_BYTES
    plan = memory.storage_plan(SMALL_NET_BYTES, None)
    assert plan.dtype_name == "float32" and not plan.lazy
    plan = memory.storage_plan(SMALL_NET_BYTES, 70_000, focus="3")
    assert plan.lazy and plan.keep == {"3", "4", "2"}  # the focus first, then smallest
    assert memory.format_bytes(1536) == "1.5 KiB" and memory.format_bytes(3 << 30) == "3.0 GiB"
    # applied exactly where glibc's mallopt exists (Linux with glibc), refused elsewhere
    import platform
    import sys

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert memory.tune_allocator() is glibc


def test_release_freed_memory_gives_a_freed_heap_back_on_glibc():
    """After a model switch the app trims the heap that tune_allocator keeps: RSS falls."""
    import platform
    import sys

    from featurescope.core.capture import memory

    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        assert memory.release_freed_memory() is False
        return

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    memory.tune_allocator()
    # many small blocks (under the mmap threshold): they come from the heap and stay there
    blocks = [torch.ones(64 * 1024) for _ in range(1500)]  # ~375 MB
    held = rss()
    del blocks
    kept = rss()  # freed, but kept in the process by the 1 GiB trim threshold
    assert memory.release_freed_memory() is True
    assert rss() < kept - 200_000_000 and kept > held - 100_000_000


def test_two_captures_in_a_row_do_not_share_or_overwrite_outputs():
    model = torchvision.models.vgg11(weights=None).eval()  # conv -> ReLU(inplace=True)
    a, b = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    first = capture(model, a)
    kept = {name: first[name].clone() for name in first.layers}
    second = capture(model, b)  # the in-place protection is now learned, not re-probed
    third = capture(model, a)
    for name in first.layers:
        assert torch.equal(first[name], kept[name]), name  # not overwritten
        assert first.raw(name).data_ptr() != second.raw(name).data_ptr()
        assert torch.equal(third[name], kept[name]), name  # conv outputs still pre-ReLU
    assert (first["features.0"] < 0).any()  # the conv output, not the ReLU's
    assert not torch.equal(first["features.0"], second["features.0"])
    assert second.info == first.info  # metadata is cached but still right
    assert capture(model, torch.randn(1, 3, 32, 32)).info["features.0"].output_shape == (64, 32, 32)


def test_efficientnet_lite0_runs_under_inference_mode():
    from featurescope.core.models.sources import lite

    model = lite.EfficientNetLite0().eval()
    x = torch.randn(1, 3, 64, 64)
    result = capture(model, x)
    assert all(result.raw(name).is_inference() for name in result.layers)  # trusted: no_grad not needed
    reference = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda m, i, o, name=name: reference.__setitem__(name, o.clone()))
        for name in ("stem", "blocks.1.depthwise", "blocks.2.project", "head")]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    for name, expected in reference.items():
        torch.testing.assert_close(result[name], expected[0])


class _FlattenedCifarNet(nn.Module):
    """Built for 32x32 inputs: its Linear layer fails on anything else."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_a_network_fed_the_wrong_input_size_gives_one_sentence():
    from featurescope.core.errors import ModelError

    net = _FlattenedCifarNet().eval()
    with pytest.raises(ModelError) as info:
        describe_layers(net, (1, 3, 64, 64))
    text = str(info.value)
    assert "_FlattenedCifarNet failed on a 3x64x64 input" in text
    # read in the app too, so the sentence names no command-line flag
    assert "input size and channels" in text and "--" not in text and "\n" not in text
    assert len(describe_layers(net, (1, 3, 32, 32))) == 2  # the size it was built for works


def test_out_of_memory_in_the_forward_pass_is_a_sentence_not_a_crash():
    from featurescope.core.errors import ModelError

    class Greedy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            self.conv(x)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with pytest.raises(ModelError, match=r"^Out of memory on cpu running Greedy on a 3x32x32 input"):
        capture(Greedy().eval(), torch.zeros(1, 3, 32, 32))


def test_one_pair_reading_for_sizes():
    from featurescope.core.capture.layers import pair

    assert pair(3) == (3, 3) and pair((2, 5)) == (2, 5) and pair([4]) == (4, 4)
    assert pair(None) is None and pair(None, 1) == (1, 1) and pair((), 0) == (0, 0)
    # every reader agrees with the module's own numbers (LayerInfo, arithmetic, receptive)
    import torch.nn as nn

    from featurescope.core.capture.layers import build_layer_info

    conv = nn.Conv2d(3, 4, (3, 5), stride=(1, 2), padding=(1, 2), dilation=2)
    info = build_layer_info("c", "c", conv, "Conv2d", 0, torch.zeros(1, 3, 9, 9), conv(torch.zeros(1, 3, 9, 9)))
    assert (info.kernel_size, info.stride, info.padding, info.dilation) == ((3, 5), (1, 2), (1, 2), (2, 2))
