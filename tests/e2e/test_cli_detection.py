"""`featurescope predict` on a detector and a segmenter (random weights, in process)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from featurescope.cli.main import main


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (90, 150, 3), dtype=np.uint8)).save(path)
    return path


def test_predict_json_of_a_detector_lists_boxes_in_image_pixels(photo, capsys):
    code = main(["predict", str(photo), "--model", "ssdlite320_mobilenet_v3_large", "--weights",
                 "none", "--device", "cpu", "--input-size", "160", "--score-threshold", "0",
                 "--top", "4", "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and "untrained" in err
    data = json.loads(out)
    assert list(data) == ["detections"] and len(data["detections"]) == 4
    for row in data["detections"]:
        assert set(row) == {"label", "score", "box"}
        x0, y0, x1, y1 = row["box"]
        assert 0 <= x0 <= x1 <= 150 and 0 <= y0 <= y1 <= 90
    # the lines say the same
    assert main(["predict", str(photo), "--model", "ssdlite320_mobilenet_v3_large", "--weights",
                 "none", "--device", "cpu", "--input-size", "160", "--score-threshold", "0",
                 "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("photo.png (150 x 90), ssdlite320_mobilenet_v3_large (untrained)")
    assert lines[1].startswith(" 0. " + data["detections"][0]["label"]) and " box " in lines[1]


def test_predict_json_of_a_segmenter_gives_fractions(photo, capsys):
    code = main(["predict", str(photo), "--model", "lraspp_mobilenet_v3_large", "--weights", "none",
                 "--device", "cpu", "--input-size", "96", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and list(data) == ["segmentation"]
    assert set(data["segmentation"][0]) == {"label", "fraction"}
    assert sum(r["fraction"] for r in data["segmentation"]) == pytest.approx(1.0, abs=1e-4)


def test_export_gradcam_of_a_detectors_box(photo, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["export", str(photo), "--model", "ssdlite320_mobilenet_v3_large", "--weights", "none",
                 "--device", "cpu", "--input-size", "160", "--layers", "backbone.features.1.0.1.0",
                 "--gradcam-layer", "backbone.features.1.0.1.0", "--gradcam-target", "box:2",
                 "-o", str(out)])
    assert code == 0
    sidecar = json.loads((out / "gradcam_backbone.features.1.0.1.0.json").read_text())
    assert sidecar["box_number"] == 2 and len(sidecar["box"]) == 4 and "class_index" not in sidecar
    capsys.readouterr()
    # a class target for a detector is one sentence, before any file is written
    code = main(["export", str(photo), "--model", "ssdlite320_mobilenet_v3_large", "--weights", "none",
                 "--device", "cpu", "--input-size", "160", "--gradcam-target", "class:dog",
                 "-o", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == 2 and "is a detector, explained one box at a time; name the box as box:N" in err
    assert not (tmp_path / "nothing").exists()


def test_why_explains_a_segmenters_class_over_its_region(photo, capsys):
    code = main(["why", str(photo), "--model", "fcn_resnet50", "--weights", "none", "--device", "cpu",
                 "--input-size", "64", "--layer", "backbone.layer4.2.conv3", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["class"]["label"] != "__background__"
    assert data["faithfulness"]["top"][0] == pytest.approx(data["class"]["probability"], abs=1e-6)
    # a class that is not a box, and integrated gradients, are one sentence each
    code = main(["why", str(photo), "--model", "fcn_resnet50", "--weights", "none", "--device", "cpu",
                 "--input-size", "64", "--class", "box:1"])
    assert code == 2 and "is not a detector" in capsys.readouterr().err
    code = main(["why", str(photo), "--model", "fcn_resnet50", "--weights", "none", "--device", "cpu",
                 "--input-size", "64", "--method", "integrated_gradients"])
    assert code == 2 and "use grad_x_act" in capsys.readouterr().err
