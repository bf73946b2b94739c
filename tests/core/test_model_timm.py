"""timm models (``timm:NAME``): preprocessing from timm's data config, weights none, a
state-dict file, the Hugging Face cache, and the sentence when offline. No download."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("timm")
import timm  # noqa: E402
from huggingface_hub import constants  # noqa: E402

from featurescope.core.capture.capture import capture  # noqa: E402
from featurescope.core.errors import DownloadError, ModelError  # noqa: E402
from featurescope.core.models.load import load_model  # noqa: E402

PHOTO = Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8), "RGB")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of our own, and the hub offline (it fails at once)."""
    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _same_parameters(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def resnet():
    return load_model("timm:resnet18", weights="none", device="cpu")


def test_untrained_timm_model_has_timms_own_preprocessing(resnet):
    from timm.data import create_transform, resolve_model_data_config

    assert resnet.weights_label == "untrained" and not resnet.trained
    assert resnet.display_name == "timm:resnet18 (untrained)"
    assert len(resnet.categories) == 1000 and resnet.categories[282] == "tiger cat"
    reference = create_transform(**resolve_model_data_config(resnet.module))
    assert torch.allclose(resnet.preprocess(PHOTO), reference(PHOTO).unsqueeze(0), atol=1e-6)
    assert resnet.layers[:3] == ["conv1", "maxpool", "layer1.0.conv1"]


def test_capture_of_a_timm_model_equals_its_own_forward(resnet):
    net = resnet.module
    x = torch.randn(1, 3, 64, 64)
    result = capture(resnet, x)
    with torch.no_grad():
        stem = net.conv1(x)
        pooled = net.maxpool(net.act1(net.bn1(stem)))
        stages = net.forward_features(x)
        logits = net(x)
    assert torch.allclose(result["conv1"], stem[0], atol=1e-5)
    assert torch.allclose(result["maxpool"], pooled[0], atol=1e-5)
    assert torch.allclose(result.logits, logits[0], atol=1e-4)
    # timm's own feature extractor, with the same weights: its first map is act1, whose
    # max-pool is the captured "maxpool"
    features = timm.create_model("resnet18", features_only=True)
    features.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("fc.")})
    with torch.no_grad():
        first = features.eval()(x)[0]
    assert torch.allclose(result["maxpool"], torch.nn.functional.max_pool2d(first, 3, 2, 1)[0], atol=1e-5)
    assert stages.shape[1] == result["layer4.1.conv2"].shape[0]


def test_timm_state_dict_file_and_the_hugging_face_cache(resnet, tmp_path, hf_cache):
    from safetensors.torch import save_file

    source = timm.create_model("resnet18")
    with torch.no_grad():
        source.conv1.weight.fill_(0.25)
    path = tmp_path / "mine.pth"
    torch.save(source.state_dict(), path)
    mine = load_model("timm:resnet18", weights=str(path), device="cpu")
    assert mine.weights_label == "mine.pth" and _same_parameters(mine.module, source)
    # the cache layout huggingface_hub writes: refs/main -> snapshots/<revision>/file
    repo = hf_cache / "models--timm--resnet18.a1_in1k"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    (repo / "snapshots" / revision).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()},
              str(repo / "snapshots" / revision / "model.safetensors"))
    cached = load_model("timm:resnet18", device="cpu")
    assert cached.trained and cached.weights_label == "a1_in1k"
    assert _same_parameters(cached.module, source)


def test_offline_without_cached_weights_names_the_repository_and_the_cache(hf_cache):
    with pytest.raises(DownloadError) as caught:
        load_model("timm:resnet18")
    text = str(caught.value)
    assert "Hugging Face repository timm/resnet18.a1_in1k" in text
    assert f"{hf_cache / 'models--timm--resnet18.a1_in1k'}." in text
    assert caught.value.cache_path == hf_cache / "models--timm--resnet18.a1_in1k"


def test_unknown_timm_name_suggests_the_closest():
    with pytest.raises(ModelError, match=r"'resnet19' is not a timm model; did you mean timm:resnet18\?"):
        load_model("timm:resnet19")


@pytest.fixture
def hub_server(tmp_path, monkeypatch):
    """A loopback stand-in for the Hugging Face Hub serving resnet18's model.safetensors
    (the headers hf_hub_download reads: X-Repo-Commit, ETag, Content-Length)."""
    import hashlib
    import http.server
    import threading

    from safetensors.torch import save_file

    import featurescope.core.models.sources.timm as timm_source

    source = timm.create_model("resnet18")
    with torch.no_grad():
        source.conv1.weight.fill_(0.5)
    file = tmp_path / "served.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(file))
    data = file.read_bytes()
    etag = hashlib.sha256(data).hexdigest()

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _headers(self) -> bool:
            if not self.path.endswith("/resolve/main/model.safetensors"):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            self.send_response(200)
            self.send_header("X-Repo-Commit", "a" * 40)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return True

        def do_HEAD(self):
            self._headers()

        def do_GET(self):
            if self._headers():
                try:
                    for start in range(0, len(data), 1 << 16):
                        self.wfile.write(data[start:start + (1 << 16)])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a cancelled download hangs up

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass

    cache = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server = QuietServer(("127.0.0.1", 0), Hub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setattr(timm_source, "HUB_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield source, cache / "models--timm--resnet18.a1_in1k"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_default_weights_download_into_the_hugging_face_cache_with_progress(hub_server):
    source, folder = hub_server
    seen = []
    m = load_model("timm:resnet18", device="cpu", progress=lambda done, total, text: seen.append((done, total, text)))
    assert _same_parameters(m.module, source) and m.trained
    downloads = [(done, total) for done, total, text in seen if text == "Downloading model.safetensors"]
    assert downloads and downloads[-1][0] == downloads[-1][1] > 0
    assert (folder / "snapshots" / ("a" * 40) / "model.safetensors").is_file()
    # the second time it comes from the cache: no download
    seen.clear()
    load_model("timm:resnet18", device="cpu", progress=lambda done, total, text: seen.append(text))
    assert "Downloading model.safetensors" not in seen


def test_timm_download_can_be_cancelled(hub_server):
    from featurescope.core.progress import CancelToken, Cancelled

    _source, folder = hub_server
    token = CancelToken()

    def progress(done, total, text):
        if text.startswith("Downloading") and done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        load_model("timm:resnet18", progress=progress, cancel=token)
    assert not list(folder.glob("snapshots/*/model.safetensors"))


def test_unreachable_hub_fails_at_once_with_the_sentence(hf_cache, monkeypatch):
    import socket

    import featurescope.core.models.sources.timm as timm_source

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(timm_source, "HUB_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError, match=r"repository timm/resnet18.a1_in1k \(http://127.0.0.1:\d+ could not "
                                            r"be reached: .*\); .* copy its cache folder to "):
        load_model("timm:resnet18")
