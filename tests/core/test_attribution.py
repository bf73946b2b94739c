"""Channel attribution against a brute-force loop and Captum's LayerIntegratedGradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from featurescope.core.analysis.attribution import attribute
from featurescope.core.errors import ModelError


def random_resnet18(seed=3):
    """resnet18 with random weights and random batch-norm statistics: biases everywhere,
    so the network is not positively homogeneous (where grad x act equals integrated
    gradients and a wrong path integral would go unnoticed)."""
    torch.manual_seed(seed)
    module = torchvision.models.resnet18(weights=None, num_classes=10)
    for sub in module.modules():
        if isinstance(sub, nn.BatchNorm2d):
            sub.running_mean.normal_(0, 0.2)
            sub.running_var.uniform_(0.5, 1.5)
            sub.weight.data.uniform_(0.5, 1.5)
            sub.bias.data.normal_(0, 0.2)
    return module.eval()


def resnet18_tail(module, a):
    """resnet18 after layer3, written out by hand."""
    return module.fc(torch.flatten(module.avgpool(module.layer4(a)), 1))


def resnet18_head(module, x):
    m = module
    return m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))


def brute_force_ig(tail, a, target, steps):
    """Integrated gradients from zero, one tail pass per Gauss-Legendre node (a loop)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    total = torch.zeros_like(a)
    for node, weight in zip(nodes, weights):
        scaled = (0.5 * (node + 1) * a).requires_grad_(True)
        (gradient,) = torch.autograd.grad(tail(scaled)[0, target], scaled)
        total += 0.5 * weight * gradient
    return (a * total)[0]


def test_grad_x_act_and_integrated_gradients_match_a_brute_force_loop():
    module = random_resnet18()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = resnet18_head(module, x)
        logits = resnet18_tail(module, a)
    target = int(logits[0].argsort()[-2])  # not the top class: a chosen one
    leaf = a.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(resnet18_tail(module, leaf)[0, target], leaf)
    expected = (a * gradient)[0]

    ours = attribute(module, x, "layer3", target=target)
    assert ours.target == target and ours.method == "grad_x_act"
    assert ours.maps.shape == (256, 4, 4) and ours.channels.shape == (256,)
    np.testing.assert_allclose(ours.maps, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours.channels, expected.sum((1, 2)).numpy(), atol=1e-4)
    assert ours.logit == pytest.approx(float(logits[0, target]), abs=1e-5)

    ig = attribute(module, x, "layer3", target=target, method="integrated_gradients", steps=32)
    expected_ig = brute_force_ig(lambda t: resnet18_tail(module, t), a, target, 32)
    np.testing.assert_allclose(ig.maps, expected_ig.numpy(), atol=1e-5)
    # Completeness: the contributions add up to logit(photo) - logit(layer zeroed).
    with torch.no_grad():
        zeroed = float(resnet18_tail(module, torch.zeros_like(a))[0, target])
    assert ig.baseline_logit == pytest.approx(zeroed, abs=1e-5)
    assert ig.channels.sum() == pytest.approx(ig.logit - zeroed, rel=0.01)
    # The two methods disagree here (biases), so the test above could tell them apart.
    assert np.abs(ig.channels - ours.channels).max() > 1e-3
    # Ranking: top() is by contribution, against() the negative ones.
    assert ours.top(3) == list(np.argsort(-ours.channels)[:3])
    assert all(ours.channels[c] < 0 for c in ours.against(5))


class Replaced(nn.Module):
    """The rest of ``model`` after ``layer`` as a function of that layer's output:
    ``forward(a)`` runs ``model`` on the photo repeated to a's batch, with the layer's
    output replaced by ``a`` (a forward hook: the reference, not featurescope's taps)."""

    def __init__(self, model, layer, x):
        super().__init__()
        self.model, self.x, self.entry = model, x, nn.Identity()
        self.layer = dict(model.named_modules())[layer]

    def forward(self, a):
        a = self.entry(a)
        handle = self.layer.register_forward_hook(lambda module, inputs, output: a.clone())
        try:
            return self.model(self.x.expand(a.shape[0], -1, -1, -1))
        finally:
            handle.remove()


def test_integrated_gradients_match_captum_across_a_skip_connection():
    captum_attr = pytest.importorskip("captum.attr")
    module = random_resnet18(4)
    x = torch.randn(1, 3, 64, 64)
    # Inside a residual block: the block's identity comes from before the layer, so
    # featurescope broadcasts it from batch 1 (``out += identity``).
    layer = "layer3.1.bn2"
    ours = attribute(module, x, layer, method="integrated_gradients", steps=32)
    rest = Replaced(module, layer, x)
    with torch.no_grad():
        a = {}
        handle = rest.layer.register_forward_hook(lambda m, i, o: a.__setitem__("a", o.clone()))
        module(x)
        handle.remove()
    lig = captum_attr.LayerIntegratedGradients(rest, rest.entry)
    theirs = lig.attribute(a["a"], baselines=torch.zeros_like(a["a"]), target=ours.target,
                           n_steps=32, method="gausslegendre")[0].detach()
    assert ours.maps.shape == tuple(theirs.shape)
    np.testing.assert_allclose(ours.maps, theirs.numpy(), atol=2e-5)
    correlation = np.corrcoef(ours.channels, theirs.sum((1, 2)).numpy())[0, 1]
    assert correlation > 0.9999
    assert ours.channels.sum() == pytest.approx(ours.logit - ours.baseline_logit, rel=0.01)


class ConcatNet(nn.Module):
    """A skip connection by concatenation (DenseNet, U-Net): batch 1 cannot broadcast
    against the steps' batch, so attribution runs the whole batch."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.conv3 = nn.Conv2d(11, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def tail(self, early, a):
        joined = torch.cat([early, torch.tanh(a)], dim=1)
        return self.fc(torch.relu(self.conv3(joined)).mean((2, 3)))

    def forward(self, x):
        early = torch.relu(self.conv1(x))
        return self.tail(early, self.conv2(early))


def test_a_concatenation_after_the_layer_falls_back_to_the_whole_batch():
    torch.manual_seed(5)
    net = ConcatNet().eval()
    x = torch.randn(1, 3, 16, 16)
    ours = attribute(net, x, "conv2", target=2, method="integrated_gradients", steps=8)
    with torch.no_grad():
        early = torch.relu(net.conv1(x))
        a = net.conv2(early)
    expected = brute_force_ig(lambda t: net.tail(early.expand(t.shape[0], -1, -1, -1), t), a, 2, 8)
    np.testing.assert_allclose(ours.maps, expected.numpy(), atol=1e-5)


def test_user_errors_are_sentences():
    module = random_resnet18()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ModelError, match="'fc' in ResNet does not output a feature map"):
        attribute(module, x, "fc")
    with pytest.raises(ModelError, match="has 10 classes, so class 10 does not exist"):
        attribute(module, x, "layer3", target=10)
    with pytest.raises(ModelError, match="'saliency' is not an attribution method"):
        attribute(module, x, "layer3", method="saliency")
    with pytest.raises(ModelError, match="no layer|not a layer|has no"):
        attribute(module, x, "layer9")
