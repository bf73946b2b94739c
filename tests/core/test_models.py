"""Catalogue, weights resolution (embedded / none / file / download) and custom models."""
from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import warnings

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from featurescope.core.models import load as models
from featurescope.core.models.sources import lite
from featurescope.core.errors import DeviceError, DownloadError, ModelError, WeightsError
from featurescope.core.models.load import CatalogueEntry, catalogue, load_model
from featurescope.core.models.sources import torchvision as torchvision_source
from featurescope.core.models.sources.torchvision import cache_path_for
from featurescope.core.progress import CancelToken, Cancelled
from featurescope.core.resources import default_sample, resource_path


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache of our own (torch.hub.get_dir() follows TORCH_HOME)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "torch" / "hub" / "checkpoints"


def reference_preprocess(image) -> torch.Tensor:
    """Lite0's reference evaluation steps, written out: shorter side to 256 px (bicubic),
    224 x 224 centre crop, scaled to [-1, 1]."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    image = TF.resize(image.convert("RGB"), 256, interpolation=InterpolationMode.BICUBIC, antialias=True)
    image = TF.center_crop(image, 224)
    tensor = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float32)
    return TF.normalize(tensor, (0.5,) * 3, (0.5,) * 3).unsqueeze(0)


def _same_parameters(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


# --------------------------------------------------------------------------- catalogue

def test_catalogue_lists_lite_first_then_torchvision_cnns(hub):
    entries = catalogue()
    assert entries[0] == CatalogueEntry("efficientnet_lite0", "EfficientNet-Lite", "embedded",
                                        "embedded ImageNet")
    by_name = {e.name: e for e in entries}
    assert len(by_name) == len(entries)
    assert by_name["resnet50"].weights_name == "ResNet50_Weights.IMAGENET1K_V2"
    assert by_name["resnet50"].weights_status == "downloadable"
    families = {e.family for e in entries}
    for family in ("VGG", "ResNet", "ResNeXt", "Wide ResNet", "AlexNet", "GoogLeNet",
                   "Inception v3", "DenseNet", "SqueezeNet", "MobileNet v2", "MobileNet v3",
                   "MNASNet", "ShuffleNet v2", "EfficientNet", "EfficientNet v2", "RegNet",
                   "ConvNeXt"):
        assert family in families
    assert by_name["wide_resnet50_2"].family == "Wide ResNet"
    assert by_name["efficientnet_v2_s"].family == "EfficientNet v2"
    assert not [e.name for e in entries if e.name.startswith(("vit", "swin", "maxvit"))]
    names = [e.name for e in entries]
    assert names.index("resnet18") < names.index("resnet101")  # smallest first
    assert names.index("regnet_x_400mf") < names.index("regnet_x_1_6gf")


def test_cached_weights_show_as_cached(hub):
    path = cache_path_for("resnet18")
    assert path == hub / "resnet18-f37072fd.pth"
    hub.mkdir(parents=True)
    path.write_bytes(b"placeholder")
    status = {e.name: e.weights_status for e in catalogue()}
    assert status["resnet18"] == "cached"
    assert status["resnet34"] == "downloadable"


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(ModelError, match=r"'resnet19' is not a model featurescope knows; did you mean resnet18\?"):
        load_model("resnet19", weights="none")


# --------------------------------------------------------------------------- lite

@pytest.fixture(scope="module")
def lite_model():
    return load_model("efficientnet_lite0", device="cpu")


def test_default_model_is_pretrained_lite0_and_sees_the_cat(lite_model):
    m = lite_model
    assert m.name == "efficientnet_lite0" and m.trained
    assert m.weights == "default" and m.weights_label == "embedded ImageNet"
    assert m.display_name == "efficientnet_lite0 (embedded ImageNet)"
    assert m.input_size == (224, 224) and m.mean == (0.5, 0.5, 0.5) and m.std == (0.5, 0.5, 0.5)
    assert len(m.categories) == 1000 and m.categories[282] == "tiger cat"
    assert not m.module.training and m.device == torch.device("cpu")
    x = m.preprocess(Image.open(default_sample()))
    assert torch.equal(x, reference_preprocess(Image.open(default_sample())))
    with torch.inference_mode():
        top = int(m.module(x).argmax())
    assert m.categories[top] in {"Egyptian cat", "tabby", "tiger cat"}


def test_deprocess_gives_back_the_picture_the_model_sees(lite_model):
    image = Image.new("RGB", (300, 260), (200, 30, 90))
    x = lite_model.preprocess(image)
    picture = lite_model.deprocess(x)
    assert picture.shape == (224, 224, 3) and picture.dtype == np.uint8
    assert (picture == np.array([200, 30, 90], np.uint8)).all()
    assert np.array_equal(lite_model.deprocess(x[0]), picture)


# --------------------------------------------------------------------------- weights="none"

def test_untrained_is_seeded_labelled_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = load_model("resnet18", weights="none", device="cpu")
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random stream untouched
    b = load_model("resnet18", weights="none")
    assert _same_parameters(a.module, b.module)
    assert a.weights_label == "untrained" and not a.trained
    assert a.display_name == "resnet18 (untrained)"
    assert a.categories == list(torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"])


def test_torchvision_preprocessing_is_the_weights_transforms():
    m = load_model("mobilenet_v3_small", weights="none", device="cpu")
    image = Image.open(resource_path("samples", "coffee.png"))
    reference = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.transforms()(image)
    assert torch.equal(m.preprocess(image), reference.unsqueeze(0))
    assert m.input_size == (224, 224) and m.mean == (0.485, 0.456, 0.406)


def test_overridden_input_size_and_statistics():
    m = load_model("squeezenet1_1", weights="none", input_size=(96, 128), mean=(0.5, 0.5, 0.5),
                   std=(0.25, 0.25, 0.25))
    x = m.preprocess(Image.new("RGB", (640, 480), (255, 128, 0)))
    assert x.shape == (1, 3, 96, 128) and m.input_size == (96, 128)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([2.0, (128 / 255 - 0.5) / 0.25, -2.0]), atol=1e-6)
    with pytest.raises(ModelError, match="mean must have 3 values"):
        load_model("squeezenet1_1", weights="none", mean=(0.5, 0.5))
    one = load_model("squeezenet1_1", weights="none", mean=(0.5,), std=(0.25,))
    assert one.mean == (0.5, 0.5, 0.5) and one.std == (0.25, 0.25, 0.25)


def test_googlenet_untrained_drops_training_only_aux_classifiers():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FutureWarning about init_weights
        m = load_model("googlenet", weights="none", input_size=64)
    assert m.module.aux1 is None and m.module.aux2 is None


def test_missing_device_is_a_device_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="cuda is not available on this machine"):
        load_model("squeezenet1_1", weights="none", device="cuda")


# --------------------------------------------------------------------------- weights=path

def test_state_dict_file_loads_and_is_named_by_its_file(tmp_path):
    source = load_model("squeezenet1_1", weights="none").module
    with torch.no_grad():
        source.features[0].weight.mul_(3.0)
    path = tmp_path / "mynet.pth"
    torch.save(source.state_dict(), path)
    m = load_model("squeezenet1_1", weights=path)
    assert _same_parameters(m.module, source)
    assert m.weights_label == "mynet.pth" and m.trained and m.display_name == "squeezenet1_1 (mynet.pth)"
    # A training checkpoint that wraps the state dict works as well.
    torch.save({"epoch": 3, "state_dict": source.state_dict()}, tmp_path / "ckpt.pt")
    assert _same_parameters(load_model("squeezenet1_1", weights=str(tmp_path / "ckpt.pt")).module, source)


def test_lite_accepts_its_original_efficientnet_pytorch_key_names():
    m = load_model("efficientnet_lite0", weights=str(lite.weights_file()))
    assert m.weights_label == lite.weights_file().name
    assert _same_parameters(m.module, load_model("efficientnet_lite0", device="cpu").module)


def test_old_densenet_key_names_are_renamed(tmp_path):
    source = load_model("densenet121", weights="none", input_size=32).module
    old_style = {k.replace("norm1.", "norm.1.").replace("conv1.", "conv.1.")
                 if "denselayer" in k else k: v for k, v in source.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old_style
    # Checkpoints from before BatchNorm counted batches lack num_batches_tracked.
    old_style = {k: v for k, v in old_style.items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, tmp_path / "old.pth")
    assert _same_parameters(load_model("densenet121", weights=tmp_path / "old.pth").module, source)


def test_mismatched_state_dict_names_counts_and_keys(tmp_path):
    state = load_model("resnet18", weights="none").module.state_dict()
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as info:
        load_model("resnet18", weights=tmp_path / "bad.pth")
    assert str(info.value) == (
        "bad.pth does not fit resnet18: 1 missing keys (fc.bias); 1 unexpected keys "
        "(extra.weight); 1 keys with other shapes (conv1.weight: file (8, 3, 7, 7), "
        "model (64, 3, 7, 7)).")


def test_other_architecture_lists_the_first_few_keys(tmp_path):
    torch.save(load_model("squeezenet1_1", weights="none").module.state_dict(), tmp_path / "sq.pth")
    with pytest.raises(WeightsError, match=r"sq.pth does not fit resnet18: 102 missing keys "
                                           r"\(conv1.weight, bn1.weight, bn1.bias, ...\); 52 unexpected keys "
                                           r"\(features.0.weight, features.0.bias, features.3.squeeze.weight, ...\)\."):
        load_model("resnet18", weights=tmp_path / "sq.pth")


def test_missing_and_broken_weights_files(tmp_path):
    with pytest.raises(WeightsError, match=r"The weights file .*nothere.pth does not exist\."):
        load_model("squeezenet1_1", weights=tmp_path / "nothere.pth")
    (tmp_path / "notes.pth").write_text("these are not weights")
    with pytest.raises(WeightsError, match=r"notes.pth is not a PyTorch weights file"):
        load_model("squeezenet1_1", weights=tmp_path / "notes.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="list.pth does not hold a state dict"):
        load_model("squeezenet1_1", weights=tmp_path / "list.pth")


def test_full_pickle_needs_trust_pickle_and_warns(tmp_path):
    source = load_model("squeezenet1_1", weights="none").module
    with torch.no_grad():
        source.classifier[1].bias.fill_(0.25)
    torch.save(source, tmp_path / "whole.pt")
    with pytest.raises(WeightsError) as info:
        load_model("squeezenet1_1", weights=tmp_path / "whole.pt")
    text = str(info.value)
    assert text.startswith("whole.pt is a full pickle") and "can run any code" in text
    assert "trust_pickle=True" in text and "--trust-pickle" in text
    with pytest.warns(UserWarning, match="whole.pt with the full unpickler"):
        m = load_model("squeezenet1_1", weights=tmp_path / "whole.pt", trust_pickle=True)
    assert _same_parameters(m.module, source) and not m.module.training


# --------------------------------------------------------------------------- custom models

MODEL_FILE = '''
import torch
from torch import nn

categories = ["left", "right"]


def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(x)


def not_a_model():
    return 42
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "mynet.py"
    path.write_text(MODEL_FILE)
    return path


def test_custom_model_from_a_python_file(model_file, tmp_path):
    m = load_model(f"{model_file}:build", weights="none")
    assert m.input_size == (224, 224) and m.mean == (0.485, 0.456, 0.406)
    assert m.std == (0.229, 0.224, 0.225)
    assert m.categories == ["left", "right"]  # from the file's `categories`
    assert m.display_name == f"{model_file}:build (untrained)" and not m.trained
    x = m.preprocess(Image.new("RGB", (50, 40)))
    assert x.shape == (1, 3, 224, 224)
    assert m.module(x).shape == (1, 2)
    # Its state dict loads back through weights=path, with overridden preprocessing.
    trained = load_model(f"{model_file}:build")
    assert trained.weights_label == "factory weights"
    torch.save(trained.module.state_dict(), tmp_path / "mine.pth")
    again = load_model(f"{model_file}:build", weights=tmp_path / "mine.pth", input_size=32,
                       mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert _same_parameters(again.module, trained.module)
    assert again.preprocess(Image.new("RGB", (50, 40))).shape == (1, 3, 32, 32)
    assert load_model(f"{model_file}:Net", weights="none").module.conv.out_channels == 2


def test_custom_model_errors(model_file, tmp_path):
    with pytest.raises(ModelError, match=r"The model file .*missing.py does not exist\."):
        load_model(f"{tmp_path / 'missing.py'}:build")
    with pytest.raises(ModelError, match=r"mynet.py has no function or class called 'nope'\."):
        load_model(f"{model_file}:nope")
    with pytest.raises(ModelError, match=r"mynet.py:not_a_model returned a int, not a torch nn.Module\."):
        load_model(f"{model_file}:not_a_model")
    with pytest.raises(ModelError, match="names a file but not its factory"):
        load_model(str(model_file))
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nraise RuntimeError('half written')\n")
    with pytest.raises(ModelError, match=r"Importing broken.py failed: RuntimeError: half written\."):
        load_model(f"{broken}:build")


# --------------------------------------------------------------------------- download

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a cancelled download closes the connection mid-file; that is the point


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server serving tmp_path/served; yields its base URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def served_squeezenet(server, hub, monkeypatch, tmp_path):
    """squeezenet1_1 weights on the loopback server, named with their SHA-256 like torch's."""
    base, served = server
    source = load_model("squeezenet1_1", weights="none").module
    with torch.no_grad():
        source.features[0].bias.fill_(0.5)
    raw = tmp_path / "raw.pth"
    torch.save(source.state_dict(), raw)
    name = f"squeezenet1_1-{hashlib.sha256(raw.read_bytes()).hexdigest()[:8]}.pth"
    (served / name).write_bytes(raw.read_bytes())
    monkeypatch.setitem(torchvision_source.WEIGHTS_URLS, "squeezenet1_1", f"{base}/{name}")
    return source, hub / name, f"{base}/{name}"


def test_default_weights_download_into_the_hub_cache_with_progress(served_squeezenet):
    source, cache_file, url = served_squeezenet
    assert cache_path_for("squeezenet1_1") == cache_file and not cache_file.exists()
    calls = []
    m = load_model("squeezenet1_1", progress=lambda d, t, text: calls.append((d, t, text)))
    assert _same_parameters(m.module, source)
    assert m.trained and m.weights_label == "IMAGENET1K_V1"
    assert cache_file.is_file() and list(cache_file.parent.iterdir()) == [cache_file]
    downloads = [(d, t) for d, t, text in calls if text.startswith("Downloading")]
    size = cache_file.stat().st_size
    assert downloads[0] == (0, size) and downloads[-1] == (size, size) and len(downloads) > 3
    assert all(a[0] <= b[0] for a, b in zip(downloads, downloads[1:]))
    assert {e.name: e.weights_status for e in catalogue()}["squeezenet1_1"] == "cached"
    # Second time from the cache: no download.
    calls.clear()
    load_model("squeezenet1_1", progress=lambda d, t, text: calls.append(text))
    assert not [text for text in calls if text.startswith("Downloading")]


def test_download_can_be_cancelled_and_leaves_nothing_behind(served_squeezenet):
    _, cache_file, _ = served_squeezenet
    token = CancelToken()

    def progress(done, total, text):
        if done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        load_model("squeezenet1_1", progress=progress, cancel=token)
    assert not list(cache_file.parent.iterdir())


def test_failed_download_names_the_url_and_the_cache_path(server, hub, monkeypatch):
    base, _ = server
    url = f"{base}/resnet18-f37072fd.pth"  # not served: 404
    monkeypatch.setitem(torchvision_source.WEIGHTS_URLS, "resnet18", url)
    with pytest.raises(DownloadError) as info:
        load_model("resnet18")
    error = info.value
    assert error.url == url and error.cache_path == hub / "resnet18-f37072fd.pth"
    assert str(error) == (f"Could not download {url} (HTTP 404 File not found); download it on a "
                          f"machine with internet access and place it at {hub / 'resnet18-f37072fd.pth'}.")
    assert not list(hub.iterdir())


def test_unreachable_server_and_corrupt_file(server, hub, monkeypatch, tmp_path):
    base, served = server
    closed = http.server.HTTPServer(("127.0.0.1", 0), _QuietHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    monkeypatch.setitem(torchvision_source.WEIGHTS_URLS, "resnet18", f"http://127.0.0.1:{port}/resnet18-f37072fd.pth")
    with pytest.raises(DownloadError, match=r"Could not download http://127\.0\.0\.1:\d+/resnet18-f37072fd\.pth "
                                            r"\(.*refused.*\); .* place it at .*resnet18-f37072fd\.pth\."):
        load_model("resnet18")
    (served / "resnet18-f37072fd.pth").write_bytes(b"not the real weights")
    monkeypatch.setitem(torchvision_source.WEIGHTS_URLS, "resnet18", f"{base}/resnet18-f37072fd.pth")
    with pytest.raises(DownloadError, match="SHA-256 does not match"):
        load_model("resnet18")
    assert not list(hub.iterdir())


# --------------------------------------------------------------------------- layers

def test_layers_come_from_describe_layers_in_network_order(lite_model):
    layers = lite_model.layers
    assert layers[:4] == ["stem", "blocks.0.depthwise", "blocks.0.project", "blocks.1.expand"]
    assert layers[-2:] == ["head", "pool"] and len(layers) == 50  # 49 convs + the final pool
    stem = lite_model.layer_info[0]
    assert stem.padding == "same" and stem.output_shape == (32, 112, 112)
    assert [info.name for info in lite_model.layer_info] == layers
    small = load_model("resnet18", weights="none", input_size=64)
    assert small.layers[:2] == ["conv1", "maxpool"]
    assert small.layer_info[0].input_shape == (3, 64, 64)


def test_a_vision_transformer_is_refused_with_the_reason():
    from featurescope.core.errors import ModelError
    from featurescope.core.models.load import load_model

    with pytest.raises(ModelError, match="vision transformer"):
        load_model("vit_b_16", weights="none")


def test_a_picture_or_torchscript_file_as_weights_is_named_for_what_it_is(tmp_path, recwarn):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    with pytest.raises(WeightsError, match=r"^photo.png is not a PyTorch weights file \(it is a PNG image\)\.$"):
        load_model("squeezenet1_1", weights=tmp_path / "photo.png")
    module = load_model("squeezenet1_1", weights="none").module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's own deprecation notes, while the test writes the file
        torch.jit.save(torch.jit.trace(module, torch.zeros(1, 3, 64, 64)), tmp_path / "scripted.pt")
    recwarn.clear()
    with pytest.raises(WeightsError, match=r"scripted.pt is a TorchScript archive \(torch.jit.save\), not a state dict"):
        load_model("squeezenet1_1", weights=tmp_path / "scripted.pt")
    torch.save(module, tmp_path / "whole.pt")
    with pytest.raises(WeightsError, match="whole.pt is a full pickle"):
        load_model("squeezenet1_1", weights=tmp_path / "whole.pt")
    assert not [w for w in recwarn if "torch" in str(w.filename)]  # no torch warning before the sentence
