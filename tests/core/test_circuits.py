"""Circuits: contributions, expanded weights and the switch-off check (core/circuits/).

References are independent of the code under test: the exact linear algebra of two
directly connected convolutions, and a brute-force Jacobian of the network with its
nonlinearities swapped for identities by hand, one backward pass per output channel.
"""
import copy

import numpy as np
import pytest
import torch
from torch import nn

import featurescope as fs
from featurescope.core.circuits.graph import CLASS, layer_graph
from featurescope.core.errors import ModelError
from featurescope.core.models.sources.lite import SameConv2d


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 5, 3, padding=1)

    def forward(self, x):
        return self.b(self.a(x))


class Block(nn.Module):
    """An inverted residual block: 1x1 expand, depthwise, 1x1 project, batch norm after each."""

    def __init__(self, channels, hidden, stride=1, same=False):
        super().__init__()
        conv = (lambda *a, **k: SameConv2d(*a, **k)) if same else \
            (lambda i, o, k, stride=1, groups=1: nn.Conv2d(i, o, k, stride=stride, padding=k // 2, groups=groups))
        self.expand = conv(channels, hidden, 1)
        self.expand_bn = nn.BatchNorm2d(hidden)
        self.depthwise = conv(hidden, hidden, 3, stride=stride, groups=hidden)
        self.depthwise_bn = nn.BatchNorm2d(hidden)
        self.project = conv(hidden, channels, 1)
        self.project_bn = nn.BatchNorm2d(channels)
        self.residual = stride == 1
        self.act = nn.ReLU6()

    def forward(self, x):
        out = self.act(self.expand_bn(self.expand(x)))
        out = self.act(self.depthwise_bn(self.depthwise(out)))
        out = self.project_bn(self.project(out))
        return out + x if self.residual else out


class Net(nn.Module):
    """S = ``a``; L = ``b``; between them batch norm, ReLU, a residual block (and a
    stride-2 TF-"same" block plus max pooling when ``strided``)."""

    def __init__(self, strided=False):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.a_bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.block = Block(8, 16)
        self.strided = strided
        if strided:
            self.down = Block(8, 12, stride=2, same=True)
            self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.b = nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        out = self.block(self.relu(self.a_bn(self.a(x))))
        if self.strided:
            out = self.pool(self.down(out))
        out = self.b(self.relu(out))
        return self.head(out.mean(dim=(2, 3)))


def _randomise(net):
    torch.manual_seed(0)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):  # non-trivial folded batch norms
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _brute_force(net, source_shape, size=40):
    """d b[o, centre] / d a's output, one backward pass per output channel, through a copy
    of ``net`` whose ReLUs are identities and max pooling is average pooling (written
    out here, not through featurescope's linearisation), cropped to its support."""
    linear = copy.deepcopy(net)
    for parent in linear.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.ReLU, nn.ReLU6)):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                   count_include_pad=False))
    s = torch.zeros((1, source_shape, size, size), requires_grad=True)
    out = linear.block(linear.relu(linear.a_bn(s)))
    if linear.strided:
        out = linear.pool(linear.down(out))
    out = linear.b(linear.relu(out))
    cy, cx = out.shape[2] // 2, out.shape[3] // 2
    rows = []
    for o in range(out.shape[1]):
        (grad,) = torch.autograd.grad(out[0, o, cy, cx], s, retain_graph=True)
        rows.append(grad[0])
    full = torch.stack(rows)  # (C_out, C_in, H, W)
    support = full.abs().sum(dim=(0, 1)) > 0
    ys, xs = support.any(1).nonzero().flatten(), support.any(0).nonzero().flatten()
    return full[:, :, ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def test_two_direct_convolutions_contributions_add_up_and_weights_are_the_kernel():
    torch.manual_seed(0)
    net = TwoConvs().eval()
    x = torch.randn(1, 3, 24, 24)
    found = fs.circuit(net, x, "b", 2, top=None)
    with torch.no_grad():
        mean = net.b(net.a(x))[0, 2].mean().item()
    assert found.source == "a"
    assert len(found.sources) == 6
    assert found.value == pytest.approx(mean, abs=1e-6)
    assert found.total == pytest.approx(mean - net.b.bias[2].item(), abs=1e-4)
    assert sum(s.contribution for s in found.sources) == pytest.approx(found.total, abs=1e-5)
    assert {s.channel for s in found.excitatory} | {s.channel for s in found.inhibitory} <= set(range(6))
    weights = fs.expanded_weights(net, "b", "a")
    assert weights.shape == (5, 6, 3, 3)
    torch.testing.assert_close(weights, net.b.weight.detach(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(found.sources[0].expanded_weight,
                               net.b.weight[2, found.sources[0].channel].detach().numpy(), atol=1e-6)


def test_contributions_at_a_pinned_position_add_up_to_that_value():
    torch.manual_seed(1)
    net = TwoConvs().eval()
    x = torch.randn(1, 3, 16, 16)
    found = fs.circuit(net, x, "b", 4, position=(0, 7), check=False)
    with torch.no_grad():
        value = net.b(net.a(x))[0, 4, 0, 7].item()
    assert found.value == pytest.approx(value, abs=1e-6)
    assert found.total == pytest.approx(value - net.b.bias[4].item(), abs=1e-4)


@pytest.mark.parametrize("strided", [False, True], ids=["bn-depthwise-residual", "stride2-same-maxpool"])
def test_expanded_weights_equal_brute_force_through_bn_depthwise_and_residual(strided):
    net = _randomise(Net(strided))
    expected = _brute_force(net, 8)
    weights = fs.expanded_weights(net, "b", "a")
    assert weights.shape == expected.shape
    torch.testing.assert_close(weights, expected, atol=1e-5, rtol=1e-4)


def test_default_source_looks_through_depthwise_and_takes_the_deeper_path():
    net = _randomise(Net())
    graph = layer_graph(net)
    assert graph.feeders["block.project"] == ("block.depthwise",)
    assert graph.default_source("block.project") == "block.expand"  # depthwise looked through
    assert set(graph.feeders["b"]) == {"a", "block.project"}  # the residual sum: two paths
    assert graph.default_source("b") == "block.project"  # the deeper one
    assert graph.default_source("a") is None
    assert graph.default_source(CLASS) == "b"


def test_ranking_all_channels_at_once_matches_one_at_a_time():
    net = _randomise(Net())
    x = torch.randn(1, 3, 20, 20)
    matrix = fs.contribution_matrix(net, x, "b", "block.project")
    assert matrix.shape == (6, 8)
    for c in (0, 5):
        one = fs.circuit(net, x, "b", c, source="block.project", top=None, check=False, weights=False)
        np.testing.assert_allclose(matrix[c], one.contributions, atol=1e-5)


def test_class_target_and_check_numbers():
    net = _randomise(Net())
    x = torch.randn(1, 3, 20, 20)
    found = fs.circuit(net, x, CLASS, 1, top=3)
    with torch.no_grad():
        assert found.value == pytest.approx(net(x)[0, 1].item(), abs=1e-5)
    assert found.source == "b" and len(found.sources) == 3
    assert found.check.count == 5 and found.check.draws >= 4
    # switching off every source that adds to the score lowers it by about what they added
    top = found.check.top_contribution
    assert top.fall == pytest.approx(sum(found.contributions[top.channels]), rel=0.3)


def test_bad_requests_are_one_sentence():
    net = TwoConvs().eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ModelError, match="has no layer called 'nope'"):
        fs.circuit(net, x, "nope", 0)
    with pytest.raises(ModelError, match="channels 0 to 4; 9 is not"):
        fs.circuit(net, x, "b", 9)
    with pytest.raises(ModelError, match="b does not feed a"):
        fs.circuit(net, x, "a", 0, source="b")
    with pytest.raises(ModelError, match="first layer"):
        fs.circuit(net, x, "a", 0)
    with pytest.raises(ModelError, match="outside b's 8x8 map"):
        fs.circuit(net, x, "b", 0, position=(8, 0))


def test_lite0_top_sources_matter_more_than_most_active_and_random():
    """Real ImageNet weights (embedded): for a middle layer's channels, switching off the
    5 sources with the largest contribution lowers the channel more than switching off
    its 5 most active sources or 5 random ones (the README reports how often)."""
    from featurescope.core.circuits.check import switch_off_checks
    from featurescope.core.circuits.contributions import Target, contributions, prepare

    from featurescope.core.resources import default_sample

    model = fs.load_model("efficientnet_lite0")
    # 160 px instead of 224: the same weights, a third of the time
    image = torch.nn.functional.interpolate(model.preprocess(fs.load_image(default_sample())), size=160,
                                            mode="bilinear", antialias=True)
    layer, channels = "blocks.6.project", list(range(16))
    prepared, source = prepare(model, image, layer, None)
    assert source == "blocks.6.expand"  # the depthwise convolution between is looked through
    found = contributions(prepared, source, Target(layer, 0))
    matrix = fs.contribution_matrix(model, image, layer, channels=channels)
    checks = switch_off_checks(prepared, source, Target(layer, 0), channels, matrix, found.activations,
                               found.maps.size)
    passed = sum(check.passed for check in checks)
    assert passed >= 0.75 * len(channels), [(c.top_contribution.fall, c.most_active.fall, c.random.fall)
                                             for c in checks]
