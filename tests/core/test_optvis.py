"""Feature visualisation (core/optvis): the optimised image excites its channel more than
any bundled photo and than noise, is the same for the same seed, stops on cancel,
keeps the model as it was, and comes back from the disk cache without recomputing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featurescope.core.capture.capture import capture
from featurescope.core.errors import ModelError, OptvisError
from featurescope.core.io.images import load_image
from featurescope.core.models.load import load_model
from featurescope.core.optvis import cache as cache_module
from featurescope.core.optvis import render
from featurescope.core.optvis.cache import OptvisCache
from featurescope.core.optvis.objectives import objective_values
from featurescope.core.optvis.render import activation_of, visualize
from featurescope.core.progress import CancelToken, Cancelled
from featurescope.core.resources import sample_images

MIDDLE, LAST = "blocks.8.project", "head"


@pytest.fixture(scope="module")
def lite():
    return load_model("efficientnet_lite0", device="cpu")


def small_net(in_channels=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)).eval()


def photo_means(model, layer, channels):
    """Each channel's mean activation on every bundled photo, by the ordinary capture."""
    means = []
    for path in sample_images():
        maps = capture(model, load_image(path), layers=[layer])[layer]
        means.append(maps.flatten(1).mean(1)[channels].numpy())
    return np.stack(means)  # (photos, channels)


@pytest.mark.parametrize("layer, channels", [(MIDDLE, [3, 40]), (LAST, [7, 500])])
def test_the_image_excites_its_channel_more_than_every_photo_and_noise(lite, layer, channels):
    made = visualize(lite, layer, channels, steps=24, size=96, seed=0)
    assert made.images.shape == (2, 96, 96, 3) and made.images.dtype == np.uint8
    photos = photo_means(lite, layer, channels)
    noise = np.random.default_rng(1).integers(0, 256, (len(channels), 96, 96, 3), dtype=np.uint8)
    noise_reached = activation_of(lite, layer, channels, noise)
    assert (made.activations > photos.max(axis=0)).all(), (made.activations, photos)
    assert (made.activations > noise_reached).all()
    # what visualize reports is what the image reaches through the ordinary capture
    again = activation_of(lite, layer, channels, made.images)
    np.testing.assert_allclose(made.activations, again, rtol=0.05, atol=0.05)


def test_activation_of_matches_the_capture_of_a_photo(lite):
    image = load_image(sample_images()[0])
    x = lite.preprocess(image)
    pixels = (x * torch.tensor(lite.std).view(1, 3, 1, 1) + torch.tensor(lite.mean).view(1, 3, 1, 1))
    reference = capture(lite, x, layers=[MIDDLE])[MIDDLE].flatten(1).mean(1)
    ours = activation_of(lite, MIDDLE, [5, 17], pixels.expand(2, -1, -1, -1))
    np.testing.assert_allclose(ours, reference[[5, 17]].numpy(), rtol=1e-4, atol=1e-5)


def test_same_seed_same_images_and_a_channel_does_not_depend_on_its_batch():
    net = small_net()
    first = visualize(net, "2", [1, 4], steps=6, size=24, seed=3)
    second = visualize(net, "2", [1, 4], steps=6, size=24, seed=3)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.activations, second.activations)
    other_seed = visualize(net, "2", [1, 4], steps=6, size=24, seed=4)
    assert not np.array_equal(first.images, other_seed.images)
    alone = visualize(net, "2", [4], steps=6, size=24, seed=3)
    assert np.abs(alone.images[0].astype(int) - first.images[1].astype(int)).max() <= 1
    split = visualize(net, "2", [1, 4], steps=6, size=24, seed=3, batch_size=1)
    assert np.abs(split.images.astype(int) - first.images.astype(int)).max() <= 1


def test_cancel_between_steps_and_progress_and_previews():
    net = small_net()
    token, seen, previews = CancelToken(), [], []

    def progress(done, total, text):
        seen.append((done, total))
        if done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        visualize(net, "0", [0, 1, 2], steps=50, size=16, progress=progress, cancel=token)
    assert seen == [(1, 50), (2, 50), (3, 50)]  # stopped right after the step that cancelled

    def preview(channels, images, step):
        previews.append((channels, images.shape, step))

    visualize(net, "0", [0, 1, 2], steps=8, size=16, batch_size=2, preview=preview, preview_every=4)
    assert previews == [([0, 1], (2, 16, 16, 3), 4), ([0, 1], (2, 16, 16, 3), 8),
                        ([2], (1, 16, 16, 3), 4), ([2], (1, 16, 16, 3), 8)]


def test_objective_values_against_a_loop():
    act = torch.randn(3, 5, 7, 6)
    channels = torch.tensor([4, 0, 2])
    for objective, expected in (
            ("channel", [act[i, c].mean() for i, c in enumerate(channels)]),
            ("negative", [-act[i, c].mean() for i, c in enumerate(channels)]),
            ("neuron", [act[i, c, 3, 3] for i, c in enumerate(channels)])):
        np.testing.assert_allclose(objective_values(act, channels, objective).numpy(),
                                   torch.stack(expected).numpy(), rtol=1e-6)


def test_neuron_and_negative_objectives_do_what_they_say(lite):
    channel = [11]
    noise = np.random.default_rng(2).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    liked = visualize(lite, MIDDLE, channel, steps=16, size=64)
    disliked = visualize(lite, MIDDLE, channel, steps=16, size=64, objective="negative")
    on_noise = activation_of(lite, MIDDLE, channel, noise)
    assert activation_of(lite, MIDDLE, channel, disliked.images) < on_noise < liked.activations
    centre = visualize(lite, MIDDLE, channel, steps=16, size=64, objective="neuron")
    assert centre.activations[0] > activation_of(lite, MIDDLE, channel, noise, objective="neuron")[0]
    assert centre.activations[0] > activation_of(lite, MIDDLE, channel, liked.images, "neuron")[0] * 0.5


def test_the_model_is_left_as_it_was():
    net = small_net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.inference_mode():  # the app's workers may call it there
        visualize(net, "2", [0], steps=3, size=16)
    assert net.training
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_one_channel_networks_get_grey_images():
    net = small_net(in_channels=1)
    made = visualize(net, "2", [0, 5], steps=10, size=20)
    assert made.images.shape == (2, 20, 20, 3)
    assert (made.images[..., 0] == made.images[..., 1]).all() and (made.images[..., 1] == made.images[..., 2]).all()
    flat = np.full((2, 20, 20, 3), 128, np.uint8)
    assert (made.activations > activation_of(net, "2", [0, 5], flat)).all()


def test_torchvision_model_with_random_weights():
    import torchvision

    net = torchvision.models.resnet18(weights=None).eval()
    made = visualize(net, "layer2.0.conv1", [0, 1], steps=3, size=32)
    assert made.images.shape == (2, 32, 32, 3)


def test_user_errors_are_sentences():
    net = small_net()
    with pytest.raises(OptvisError, match="has 6 channels .* channel 6 does not exist"):
        visualize(net, "2", [6], steps=1, size=16)
    with pytest.raises(OptvisError, match="not an objective"):
        visualize(net, "2", [0], steps=1, size=16, objective="maximise")
    with pytest.raises(ModelError, match="no layer called"):
        visualize(net, "nope", [0], steps=1, size=16)
    with pytest.raises(OptvisError, match="does not output a feature map"):
        visualize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), "1", [0], steps=1, size=16)
    with pytest.raises(OptvisError, match="not a channel list"):
        visualize(net, "2", "0-x", steps=1, size=16)
    assert render.parse_channels("0-3,9") == [0, 1, 2, 3, 9]
    with torch.inference_mode():
        frozen = small_net()  # weights made in inference mode: no gradient can pass them
    with pytest.raises(ModelError, match="inference_mode"):
        visualize(frozen, "2", [0], steps=1, size=16)

    class NoGrad(nn.Module):  # a wrapped runtime whose forward never builds a graph
        def __init__(self):
            super().__init__()
            self.body = small_net()

        def forward(self, x):
            with torch.no_grad():
                return self.body(x)

    with pytest.raises(ModelError, match="gives no gradients"):
        visualize(NoGrad(), "body.2", [0], steps=1, size=16)


def test_cache_hits_are_read_back_without_optimising(tmp_path, monkeypatch):
    net = small_net()
    store = OptvisCache(tmp_path)
    first = store.visualize(net, "2", [0, 3], steps=4, size=16)
    assert first.settings["cached"] == []
    calls = []
    real = cache_module.visualize
    monkeypatch.setattr(cache_module, "visualize", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    again = store.visualize(net, "2", [3, 0, 5], steps=4, size=16)
    assert calls == [[5]]  # only the new channel was optimised
    np.testing.assert_array_equal(again.images[:2], first.images[::-1])
    np.testing.assert_array_equal(again.activations[:2], first.activations[::-1])
    store.visualize(net, "2", [0], steps=5, size=16)  # other settings: a miss
    assert calls[-1] == [0]
    with torch.no_grad():
        net[0].weight.add_(0.1)
    cache_module._FINGERPRINTS.pop(net, None)  # (a changed module is a new load in practice)
    store.visualize(net, "2", [0], steps=4, size=16)  # other weights: a miss
    assert calls[-1] == [0] and len(calls) == 3


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURESCOPE_CACHE_DIR", str(tmp_path / "fs"))
    assert cache_module.default_cache_dir() == tmp_path / "fs" / "optvis"
    monkeypatch.delenv("FEATURESCOPE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_module.default_cache_dir() == tmp_path / "xdg" / "featurescope" / "optvis"


def test_hierarchy_spreads_layers_and_ranks_channels_by_the_photo(lite):
    from featurescope.core.optvis.hierarchy import (
        hierarchy, hierarchy_layers, natural_objective, poster, strongest_channels)

    layers = hierarchy_layers(lite, 5)
    assert layers[0] == lite.layers[0] and layers[-1] == "head" and len(layers) == 5
    order = [lite.layers.index(name) for name in layers]
    assert order == sorted(order)
    assert natural_objective(lite, "stem") == "neuron" and natural_objective(lite, "head") == "channel"
    cat = load_image(sample_images()[1])
    maps = capture(lite, cat)["blocks.8.project"]
    brute = sorted(range(maps.shape[0]), key=lambda c: -float(maps[c].mean()))[:3]
    assert strongest_channels(lite, cat, "blocks.8.project", 3) == brute
    rows = hierarchy(lite, ["stem", "head"], per_layer=2, image=cat, steps=2, size=16)
    assert [r.layer for r in rows] == ["stem", "head"] and rows[0].visualization.settings["objective"] == "neuron"
    assert rows[1].visualization.channels == strongest_channels(lite, cat, "head", 2)
    picture = poster(rows, "title", tile=32)
    assert picture.dtype == np.uint8 and picture.shape[0] >= 2 * 32


OWN_NETS = '''
import torch
from torch import nn


class Grey(nn.Module):
    input_size = 28

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 6, 3)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv(x))).mean((2, 3))


class Rgba(nn.Module):
    input_size = 32

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))
'''


def test_own_one_and_four_channel_models_use_their_channels_and_statistics(tmp_path):
    path = tmp_path / "own.py"
    path.write_text(OWN_NETS)
    grey = load_model(f"{path}:Grey", weights="none", device="cpu", mean="0.1307", std="0.3081")
    assert grey.channels == 1
    made = visualize(grey, "conv2", [0, 3], steps=8, size=24)
    assert (made.images[..., 0] == made.images[..., 2]).all()
    flat = np.full((2, 24, 24, 3), 128, np.uint8)
    assert (made.activations > activation_of(grey, "conv2", [0, 3], flat)).all()
    rgba = load_model(f"{path}:Rgba", weights="none", device="cpu")
    made = visualize(rgba, "conv", [1], steps=4, size=16)
    assert made.images.shape == (1, 16, 16, 3)
    assert np.isfinite(activation_of(rgba, "conv", [1], made.images)).all()


def test_onnx_models_say_they_give_no_gradients(tmp_path):
    pytest.importorskip("onnxruntime")
    import warnings

    net = small_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(tmp_path / "small.onnx"), dynamo=False,
                          input_names=["image"], output_names=["out"])
    m = load_model(str(tmp_path / "small.onnx"), device="cpu")
    with pytest.raises(ModelError, match=r"^Feature visualisation needs gradients, which the ONNX model "
                                         r"small.onnx does not give\.$"):
        visualize(m, m.layers[0], [0], steps=1, size=16)


def test_go_on_after_cancel_continues_from_the_last_step_to_the_uninterrupted_picture():
    net = small_net()
    whole = visualize(net, "2", [0, 1, 2], steps=12, size=16, batch_size=2)
    token, resume, seen = CancelToken(), {}, []

    def progress(done, total, text):
        seen.append(done)
        if done == 17:  # the second batch, at its fifth step
            token.cancel()

    with pytest.raises(Cancelled):
        visualize(net, "2", [0, 1, 2], steps=12, size=16, batch_size=2, progress=progress,
                  cancel=token, resume=resume)
    assert list(resume) == [(2,)] and resume[(2,)]["step"] == 5
    steps = []
    again = visualize(net, "2", [0, 1, 2], steps=12, size=16, batch_size=2, resume=resume,
                      preview=lambda channels, images, step: steps.append((channels, step)),
                      preview_every=1)
    # the first batch ran again (nothing was kept of it), the second went on from step 5
    assert [s for c, s in steps if c == [2]] == list(range(6, 13))
    np.testing.assert_array_equal(again.images, whole.images)
    assert resume == {}
