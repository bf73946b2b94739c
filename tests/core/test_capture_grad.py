"""run_with_grad: the one "these layers, with gradients" pass, against plain PyTorch."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from featurescope.core.capture.grad import run_with_grad
from featurescope.core.errors import ModelError


class Counting(nn.Module):
    """A layer that counts its calls (to see that a stopped pass skipped it)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)  # overwrites conv1's output in place (VGG)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2)
        self.relu2 = nn.ReLU(inplace=True)
        self.shared = nn.Conv2d(8, 8, 1)  # called twice: "shared" and "shared#2"
        self.after = Counting()
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = self.shared(self.shared(x))
        x = self.after(x)
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Net().eval()


def reference(net, x, nodes):
    """The same layers and the logits from torchvision's FX feature extractor (no taps),
    on a copy whose ReLUs do not overwrite the layers' outputs."""
    net = copy.deepcopy(net)
    net.relu1.inplace = net.relu2.inplace = False
    extractor = create_feature_extractor(net, return_nodes={**{n: n for n in nodes}, "fc": "out"})
    return extractor(x)


def test_activations_and_gradients_equal_a_plain_forward(net):
    x = torch.randn(2, 3, 32, 32)
    run = run_with_grad(net, x, ["conv1", "conv2", "shared", "shared#2"], model_name="Net")
    ref = reference(net, x, ["conv1", "conv2", "shared", "shared_1"])
    assert torch.equal(run.output, ref["out"])
    for ours, theirs in (("conv1", "conv1"), ("conv2", "conv2"), ("shared", "shared"),
                         ("shared#2", "shared_1")):
        # conv1's output, not what relu1 made of it in place
        assert torch.equal(run.activations[ours], ref[theirs])
    for layer, node in (("conv1", "conv1"), ("shared#2", "shared_1")):
        score = run.output[1, 3]
        (ours,) = torch.autograd.grad(score, run.activations[layer], retain_graph=True)
        (theirs,) = torch.autograd.grad(ref["out"][1, 3], ref[node], retain_graph=True)
        assert ours.abs().max() > 0
        assert torch.allclose(ours, theirs, atol=1e-6)
    assert (net.conv1.weight.grad is None)  # autograd.grad leaves .grad alone


def test_gradients_reach_the_input_and_frozen_weights_still_give_layer_gradients(net):
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    run = run_with_grad(net, x, ["conv2"], model_name="Net")
    (ours,) = torch.autograd.grad(run.output[0, 1], x)
    x2 = x.detach().clone().requires_grad_(True)
    (theirs,) = torch.autograd.grad(net(x2)[0, 1], x2)
    assert torch.allclose(ours, theirs, atol=1e-6)

    for p in net.parameters():
        p.requires_grad_(False)
    run = run_with_grad(net, torch.randn(1, 3, 32, 32), "conv2", model_name="Net")
    (gradient,) = torch.autograd.grad(run.output[0, 2], run.activations["conv2"])
    assert gradient.shape == run.activations["conv2"].shape and gradient.abs().max() > 0


def test_replace_is_what_the_rest_of_the_network_sees(net):
    x = torch.randn(2, 3, 32, 32)
    channels = [1, 4, 6]

    def switch_off(output):
        output = output.clone()
        output[:, channels] = 0
        return output

    run = run_with_grad(net, x, ["conv2"], model_name="Net", replace={"conv2": switch_off})
    zeroed = copy.deepcopy(net)
    with torch.no_grad():
        zeroed.conv2.weight[channels] = 0
        zeroed.conv2.bias[channels] = 0
    expected = zeroed(x)
    assert torch.allclose(run.output, expected, atol=1e-6)
    assert not torch.allclose(run.output, net(x), atol=1e-3)
    assert torch.equal(run.activations["conv2"][:, channels], torch.zeros(2, 3, 15, 15))

    # a batch of scaled activations (integrated gradients): one image in, three out
    scales = torch.tensor([0.0, 0.5, 1.0])[:, None, None, None]
    one = x[:1]
    run = run_with_grad(net, one, ["conv2"], model_name="Net",
                        replace={"conv2": lambda out: out * scales})
    plain = run_with_grad(net, one, ["conv2"], model_name="Net")
    assert run.output.shape == (3, 5)
    assert torch.allclose(run.output[2], plain.output[0], atol=1e-6)
    (gradient,) = torch.autograd.grad(run.output[:, 0].sum(), run.activations["conv2"])
    assert gradient.shape == (3, 8, 15, 15)


def test_stop_after_skips_the_rest(net):
    x = torch.randn(1, 3, 32, 32)
    run = run_with_grad(net, x, ["conv1", "conv2"], model_name="Net", stop_after="conv2")
    assert run.output is None and net.after.calls == 0
    assert torch.equal(run.activations["conv2"], reference(net, x, ["conv2"])["conv2"])
    run = run_with_grad(net, x, "shared", model_name="Net", stop_after="shared#2")
    assert run.output is None and net.after.calls == 0
    with pytest.raises(ModelError, match=r"^'shared#2' does not run in Net's forward pass before "
                                         r"it stops after 'conv2'\.$"):
        run_with_grad(net, x, ["shared#2"], model_name="Net", stop_after="conv2")


def test_gradients_inside_inference_mode(net):
    with torch.inference_mode():
        x = torch.randn(1, 3, 32, 32)  # an inference tensor
        run = run_with_grad(net, x, ["conv2"], model_name="Net")
        assert run.output.requires_grad and run.activations["conv2"].requires_grad
        with torch.inference_mode(False):  # (indexing under inference_mode drops the graph)
            (gradient,) = torch.autograd.grad(run.output[0, 0], run.activations["conv2"])
    ref = reference(net, x.clone(), ["conv2"])
    (theirs,) = torch.autograd.grad(ref["out"][0, 0], ref["conv2"])
    assert torch.allclose(gradient, theirs, atol=1e-6)
    # grad=False: same values, no graph
    with torch.inference_mode():
        run = run_with_grad(net, x, ["conv2"], model_name="Net", grad=False)
    assert not run.activations["conv2"].requires_grad
    assert torch.equal(run.activations["conv2"], ref["conv2"])


def test_bad_names_are_sentences(net):
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ModelError, match=r"^Net has no layer called 'conv9'; `featurescope layers` "
                                         r"lists the layer names\.$"):
        run_with_grad(net, x, ["conv9"], model_name="Net")
    with pytest.raises(ModelError, match="no layer called 'conv1#x'"):
        run_with_grad(net, x, ["conv1#x"], model_name="Net")
    with pytest.raises(ModelError, match=r"^'conv1#2' does not run in Net's forward pass\.$"):
        run_with_grad(net, x, ["conv1#2"], model_name="Net")
    with pytest.raises(ModelError, match="^Net failed on a 5x32x32 input"):
        run_with_grad(net, torch.randn(1, 5, 32, 32), ["conv1"], model_name="Net")
