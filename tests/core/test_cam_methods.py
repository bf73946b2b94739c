"""Every CAM method against the grad-cam package (pytorch_grad_cam) on the same layer and
class, on torchvision models with random weights at small sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from featurescope.core.analysis.gradcam import compute_grad_cam
from featurescope.core.errors import ModelError
from featurescope.core.progress import CancelToken, Cancelled

pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

REFERENCE = {
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
    "layercam": "LayerCAM", "hirescam": "HiResCAM", "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM", "ablationcam": "AblationCAM",
}


def reference(module, layer, x, target, method, aug_smooth=False, eigen_smooth=False):
    cls = getattr(pytorch_grad_cam, REFERENCE[method])
    with cls(model=module, target_layers=[dict(module.named_modules())[layer]]) as cam:
        if method == "scorecam":
            cam.batch_size = 64
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)], aug_smooth=aug_smooth,
                   eigen_smooth=eigen_smooth)[0]


def assert_same_map(ours, theirs, tolerance=1e-4):
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < tolerance
    if theirs.std() > 0:
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.9999


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(11)
    return torchvision.models.resnet18(weights=None, num_classes=20).eval()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam"])
def test_each_gradient_method_equals_grad_cam_package(resnet, method):
    x = torch.randn(1, 3, 64, 64)
    for layer, target in (("layer4", 3), ("layer3.0.conv1", 7)):
        ours = compute_grad_cam(resnet, x, layer, target=target, method=method)
        assert (ours.method, ours.target) == (method, target)
        assert_same_map(ours.map, reference(resnet, layer, x, target, method))


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_smoothing_options_equal_grad_cam_package(resnet, method):
    x = torch.randn(1, 3, 64, 64)
    ours = compute_grad_cam(resnet, x, "layer3", target=5, method=method, aug_smooth=True)
    assert_same_map(ours.map, reference(resnet, "layer3", x, 5, method, aug_smooth=True))
    ours = compute_grad_cam(resnet, x, "layer3", target=5, method=method, eigen_smooth=True)
    assert_same_map(ours.map, reference(resnet, "layer3", x, 5, method, eigen_smooth=True))


def test_score_and_ablation_cam_equal_grad_cam_package_in_batches_with_progress():
    torch.manual_seed(12)
    module = torchvision.models.squeezenet1_1(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    layer = "features.3.expand3x3_activation"  # 64 channels after a ReLU
    for method in ("scorecam", "ablationcam"):
        seen = []
        ours = compute_grad_cam(module, x, layer, target=4, method=method, batch=24,
                                progress=lambda done, total, text: seen.append((done, total)))
        assert seen[0] == (0, 3) and seen[-1] == (3, 3)  # 64 channels in 3 batches of 24
        assert_same_map(ours.map, reference(module, layer, x, 4, method), tolerance=2e-4)


def test_cancel_stops_score_cam_and_bad_methods_are_sentences(resnet):
    x = torch.randn(1, 3, 64, 64)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        compute_grad_cam(resnet, x, "layer4", method="scorecam", cancel=token)
    with pytest.raises(ModelError, match="'fullgrad' is not a CAM method featurescope has"):
        compute_grad_cam(resnet, x, "layer4", method="fullgrad")
