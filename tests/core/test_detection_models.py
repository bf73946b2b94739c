"""torchvision's detectors and segmenters: catalogue, random-weights load, capture, predictions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from featurescope.core.analysis.detection import (class_mask, detections, predict_dense, run_dense,
                                                  segment_classes)
from featurescope.core.capture.capture import capture
from featurescope.core.models.load import catalogue, load_model
from featurescope.core.models.sources.detection import MODELS

# the smallest input each network runs at (SSD's extra blocks need its 300 px)
SMALL = {"ssd300_vgg16": 300, "ssdlite320_mobilenet_v3_large": 160}

# a layer each network's maps must include, with its (C, H, W) at the small input
EXPECTED = {
    "fasterrcnn_resnet50_fpn": ("backbone.body.layer3.5.conv3", (1024, 8, 8)),
    "retinanet_resnet50_fpn": ("backbone.fpn.layer_blocks.0.0", (256, 16, 16)),  # from layer2
    "fcos_resnet50_fpn": ("backbone.fpn.layer_blocks.2.0", (256, 4, 4)),  # from layer4
    "fcn_resnet50": ("backbone.layer3.5.conv3", (1024, 16, 16)),
    "ssd300_vgg16": ("backbone.features.21", (512, 38, 38)),
}


@pytest.fixture(scope="module")
def photo():
    """A 200 x 120 photo: not square, so a box's x and y scale differently."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8))


def test_catalogue_lists_detectors_and_segmenters():
    entries = {e.name: e for e in catalogue()}
    for name, (task, _side) in MODELS.items():
        assert entries[name].family == {"detection": "Detection (COCO)",
                                        "segmentation": "Segmentation (VOC)"}[task]
    assert entries["fasterrcnn_resnet50_fpn"].weights_name == \
        "FasterRCNN_ResNet50_FPN_Weights.COCO_V1"


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_loads_with_random_weights_and_its_maps_capture(name, photo):
    size = SMALL.get(name, 128)
    model = load_model(name, weights="none", input_size=size, device="cpu")
    assert model.task == MODELS[name][0] and not model.trained and not model.module.training
    assert model.input_size == (size, size)
    if model.task == "detection":  # normalised inside the detector: not twice
        assert model.mean == (0.0, 0.0, 0.0) and model.std == (1.0, 1.0, 1.0)
        transform = model.module.transform
        assert transform.min_size == (size,) and transform.max_size == size
    else:
        assert model.mean == (0.485, 0.456, 0.406)
    x = model.preprocess(photo)
    assert x.shape == (1, 3, size, size)  # the whole photo, squeezed to the input size
    result = capture(model, x, layers=[model.layers[0], model.layers[-1]], stop_early=False)
    assert result.logits is None and result.dense is not None and result.dense.task == model.task
    if name in EXPECTED:
        layer, shape = EXPECTED[name]
        assert tuple(capture(model, x, layers=[layer])[layer].shape) == shape


def test_maps_are_those_of_the_input_given_not_torchvision_800px():
    model = load_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights="none", device="cpu")
    assert model.input_size == (320, 320)
    result = capture(model, torch.rand(1, 3, 320, 320), layers=["backbone.body.0.0"])
    assert tuple(result["backbone.body.0.0"].shape[1:]) == (160, 160)  # stride 2 of 320, not 800


@pytest.fixture(scope="module")
def ssdlite():
    return load_model("ssdlite320_mobilenet_v3_large", weights="none", input_size=160, device="cpu")


def test_detections_are_in_the_photos_pixels(ssdlite, photo):
    found = predict_dense(ssdlite, photo, threshold=0.0, top=7)
    rows = found["detections"]
    assert list(found) == ["detections"] and len(rows) == 7
    assert [sorted(r) for r in rows] == [["box", "label", "score"]] * 7
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        x0, y0, x1, y1 = row["box"]
        assert 0 <= x0 <= x1 <= 200 and 0 <= y0 <= y1 <= 120
        assert row["label"] in ssdlite.categories
    # the same boxes in input pixels, scaled by 200/160 and 120/160
    dense = run_dense(ssdlite, photo)
    raw = detections(dense, ssdlite.categories, None, threshold=0.0, top=7)
    for row, box in zip(rows, raw):
        expected = [min(max(v, 0), 160) * s for v, s in zip(box.box, (1.25, 0.75, 1.25, 0.75))]
        assert row["box"] == pytest.approx(expected, abs=0.01)
    assert predict_dense(ssdlite, photo, threshold=1.01)["detections"] == []


def test_segmentation_fractions_sum_to_one(photo):
    model = load_model("lraspp_mobilenet_v3_large", weights="none", input_size=96, device="cpu")
    found = predict_dense(model, photo)
    assert list(found) == ["segmentation"] and found["segmentation"]
    assert sum(r["fraction"] for r in found["segmentation"]) == pytest.approx(1.0, abs=1e-5)
    assert all(r["label"] in model.categories for r in found["segmentation"])
    dense = run_dense(model, photo)
    classes = segment_classes(dense, model.categories)
    assert [c.fraction for c in classes] == sorted((c.fraction for c in classes), reverse=True)
    mask = class_mask(dense, photo.size)
    assert mask.shape == (120, 200) and set(np.unique(mask)) == {c.index for c in classes}


def test_a_classifier_still_predicts_classes():
    model = load_model("efficientnet_lite0", device="cpu")
    assert model.task == "classification"
    result = capture(model, torch.zeros(1, 3, 224, 224))
    assert result.dense is None and result.logits is not None


# --------------------------------------------------------------------------- default weights

@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_offline_sentence_names_the_detectors_file_and_its_backbones(hub, monkeypatch):
    import http.server

    from featurescope.core.errors import DownloadError
    from featurescope.core.models.sources import torchvision as torchvision_source

    closed = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there: as offline as a loopback gets
    url = f"http://127.0.0.1:{port}/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    monkeypatch.setitem(torchvision_source.WEIGHTS_URLS, "fasterrcnn_resnet50_fpn", url)
    with pytest.raises(DownloadError) as info:
        load_model("fasterrcnn_resnet50_fpn", device="cpu")
    text = str(info.value)
    assert text.startswith("fasterrcnn_resnet50_fpn needs fasterrcnn_resnet50_fpn_coco-258fb6c6.pth "
                           "(its backbone's ImageNet weights, resnet50-0676ba61.pth, are inside it")
    assert f"download failed: could not download {url} (" in text and "refused" in text.lower()
    assert text.endswith(f"place it at {hub / 'fasterrcnn_resnet50_fpn_coco-258fb6c6.pth'}.")
    assert "\n" not in text and info.value.cache_path == hub / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    assert not hub.exists() or not list(hub.iterdir())


def test_default_weights_from_the_cache_load_as_torchvision_saves_them(hub):
    """torchvision's COCO checkpoints come from FrozenBatchNorm2d (no num_batches_tracked)
    and a segmenter's carry the auxiliary head: both load, and the head is dropped."""
    import torchvision.models as tvm

    from featurescope.core.models.sources.torchvision import cache_path_for

    torch.manual_seed(3)
    saved = tvm.get_model("lraspp_mobilenet_v3_large", weights=None, weights_backbone=None)
    state = {k: v for k, v in saved.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = cache_path_for("lraspp_mobilenet_v3_large")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    model = load_model("lraspp_mobilenet_v3_large", device="cpu", input_size=64)
    assert model.trained and model.weights_label == "COCO_WITH_VOC_LABELS_V1"
    assert torch.equal(model.module.classifier.low_classifier.weight, saved.classifier.low_classifier.weight)

    saved = tvm.get_model("fcn_resnet50", weights=None, weights_backbone=None, aux_loss=True)
    path = cache_path_for("fcn_resnet50")
    torch.save(saved.state_dict(), path)
    model = load_model("fcn_resnet50", device="cpu", input_size=64)
    assert model.module.aux_classifier is None


def test_the_circuits_wiring_of_a_detector_leaves_it_working(photo):
    """The wiring's shapes-only pass on "meta" reached the AnchorGenerator, which keeps its
    anchors on the last input's device: every later capture failed with "Cannot copy out
    of meta tensor" (the Circuits view broke the model it looked at)."""
    from featurescope.core.circuits.graph import layer_graph

    model = load_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights="none", device="cpu", input_size=160)
    last = model.layers[-1]  # after the region proposals, so the anchors are used

    def last_map():
        result = capture(model, photo, layers=[last], stop_early=False)
        assert result.dense is not None
        return result[last]

    before = last_map()
    graph = layer_graph(model)
    assert graph.default_source("backbone.body.2.block.0.0") == "backbone.body.1.block.1.0"
    assert torch.equal(last_map(), before)
