"""Grad-CAM of a detector's box and a segmenter's class, against the grad-cam package."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featurescope.core.analysis.gradcam import compute_grad_cam, grad_cam_layer
from featurescope.core.errors import ModelError
from featurescope.core.models.load import load_model

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget  # noqa: E402


def reference(module, layer, x, target):
    """The grad-cam package's Grad-CAM of ``target(output)``."""
    with pytorch_grad_cam.GradCAM(model=module, target_layers=[dict(module.named_modules())[layer]]) as cam:
        return cam(input_tensor=x, targets=[target])[0]


def assert_same_map(ours, theirs, something=True):
    assert ours.shape == theirs.shape and (ours.max() > 0 or not something)
    assert np.abs(ours - theirs).max() < 1e-4


class NthBoxScore:
    """Score of the n-th best box, as the package's targets are written."""

    def __init__(self, n):
        self.n = n

    def __call__(self, output):
        return output["scores"][torch.argsort(output["scores"].detach(), descending=True)[self.n]]


@pytest.fixture(scope="module")
def faster_rcnn():
    model = load_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights="none", input_size=128,
                       device="cpu")
    model.module.roi_heads.score_thresh = 0.0  # random weights: keep the weak boxes too
    return model


def test_a_box_score_matches_the_grad_cam_package(faster_rcnn):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 128, 128)
    layer = grad_cam_layer(faster_rcnn.layer_info, None, faster_rcnn.name)[0]
    assert layer == "backbone.fpn.layer_blocks.0.0"  # not the RPN's, which gets no gradient
    for number in (0, 3):
        ours = compute_grad_cam(faster_rcnn, x, layer, target=number)
        assert ours.task == "detection" and ours.target == number
        assert ours.label in faster_rcnn.categories and len(ours.box) == 4
        with torch.no_grad():
            found = faster_rcnn.module(x)[0]
        assert ours.score == pytest.approx(float(found["scores"].sort(descending=True).values[number]), abs=1e-5)
        assert_same_map(ours.map, reference(faster_rcnn.module, layer, x, NthBoxScore(number)))
    body = "backbone.body.12.block.0.0"  # a backbone layer inside a block, too
    assert_same_map(compute_grad_cam(faster_rcnn, x, body, target=1).map,
                    reference(faster_rcnn.module, body, x, NthBoxScore(1)))
    # the RPN's proposals are detached: its conv explains nothing
    assert compute_grad_cam(faster_rcnn, x, "rpn.head.conv.0.0", target=0).map.max() == 0
    with pytest.raises(ModelError, match=r"found \d+ boxes, so box 100000 does not exist"):
        compute_grad_cam(faster_rcnn, x, layer, target=100000)
    with pytest.raises(ModelError, match="gradient method"):
        compute_grad_cam(faster_rcnn, x, layer, method="scorecam")


def test_a_box_of_ssdlite_matches_the_grad_cam_package():
    model = load_model("ssdlite320_mobilenet_v3_large", weights="none", input_size=160, device="cpu")
    torch.manual_seed(1)
    x = torch.rand(1, 3, 160, 160)
    maps = []
    for layer, number in (("backbone.features.1.0.1.0", 0), ("backbone.features.1.0.1.0", 2),
                          ("backbone.features.0.12.block.0.0", 1)):
        ours = compute_grad_cam(model, x, layer, target=number).map
        assert_same_map(ours, reference(model.module, layer, x, NthBoxScore(number)), something=False)
        maps.append(ours)
    assert any(m.max() > 0 for m in maps)


def test_a_segmentation_class_over_its_region_matches_the_grad_cam_package():
    model = load_model("lraspp_mobilenet_v3_large", weights="none", input_size=96, device="cpu")
    torch.manual_seed(2)
    x = torch.rand(1, 3, 96, 96)
    layer = grad_cam_layer(model.layer_info, None, model.name)[0]
    ours = compute_grad_cam(model, x, layer)
    with torch.no_grad():
        top = model.module(x)["out"][0].argmax(0)
    assert ours.task == "segmentation" and ours.label == model.categories[ours.target]
    assert bool((top == ours.target).any())

    class Out(torch.nn.Module):  # the package reads a tensor, not torchvision's dict
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)["out"]

    mask = (top == ours.target).float().numpy()
    wrapped = Out(model.module)
    theirs = reference(wrapped, "inner." + layer, x, SemanticSegmentationTarget(ours.target, mask))
    assert_same_map(ours.map, theirs)
