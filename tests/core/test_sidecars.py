"""Every export path: the picture on screen (DisplayOptions), one title, one provenance
block in every JSON sidecar, and the Grad-CAM and comparison writers of core."""
from __future__ import annotations

import errno
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from featurescope.core.errors import ExportError, FileExistsExportError
from featurescope.core.io import writers
from featurescope.core.io.provenance import PROVENANCE_KEYS
from featurescope.core.render.annotate import annotate_grid, grid_title
from featurescope.core.render.grids import colormap_lut, grid_indices
from featurescope.core.render.options import DisplayOptions, render_grid

# Not the defaults in any field: what the user set must reach every file.
OPTIONS = DisplayOptions(colormap="magma", normalize="layer", order="mean", columns=5,
                         upscale=2, clip_percentile=3.0)


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """resnet18 (untrained) on two small photos, on files so the sidecars can hash them."""
    from featurescope.core.capture.capture import capture
    from featurescope.core.models.load import load_model

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    paths = []
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)).save(folder / name)
        paths.append(folder / name)
    model = load_model("resnet18", weights="none", device="cpu", input_size=64)
    results = [capture(model, Image.open(path).convert("RGB")) for path in paths]
    return model, results, paths


def _reference_grid(chw, options: DisplayOptions) -> np.ndarray:
    """The grid view's picture, built the plain way: LUT[indices], pixels repeated."""
    from featurescope.core.render.grids import DIVERGING

    indices, _ = grid_indices(chw, normalize=options.normalize, order=options.order,
                              columns=options.columns, gap=1,
                              clip_percentile=options.clip_percentile,
                              signed=options.colormap in DIVERGING)
    rgb = colormap_lut(options.colormap)[indices]
    return np.repeat(np.repeat(rgb, options.upscale, axis=0), options.upscale, axis=1)


def test_layer_and_grid_exports_are_the_options_picture(captured, tmp_path):
    from featurescope.core.io.export import export_grid, export_layers

    model, (result, _), (source, _) = captured
    layer = "layer1.0.conv1"
    expected = _reference_grid(result[layer], OPTIONS)
    assert expected.shape[1] == 2 * (5 * 16 + 4)  # five columns of 16-pixel maps, upscaled
    export_layers(result, tmp_path / "all", layers=[layer], options=OPTIONS, model=model)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "all" / f"{layer}.png")), expected)
    export_grid(result, layer, tmp_path / "one.png", OPTIONS, model=model, source_path=source)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "one.png")), expected)
    sidecar = json.loads((tmp_path / "one.json").read_text())
    assert sidecar["grid"]["columns"] == 5 and sidecar["options"] == OPTIONS.to_dict()
    _, layout = render_grid(result[layer], OPTIONS)
    assert sidecar["channel_order"] == layout.order.tolist()
    assert sorted(sidecar["channel_order"]) == list(range(64))


def test_one_title_names_the_layer_and_the_untrained_model(captured, tmp_path):
    from featurescope.core.io.export import export_grid, export_layers

    model, (result, _), _ = captured
    assert grid_title("conv1", model) == "conv1 - resnet18 (untrained)"
    assert grid_title("conv1") == "conv1"

    class Trained:
        name, trained, weights_label = "vgg16", True, "IMAGENET1K_V1"

    assert grid_title("features.0", Trained()) == "features.0 - vgg16 (IMAGENET1K_V1)"
    rgb, layout = render_grid(result["conv1"], OPTIONS)
    expected = annotate_grid(rgb, layout, "conv1 - resnet18 (untrained)", upscale=OPTIONS.upscale)
    export_layers(result, tmp_path, layers=["conv1"], options=OPTIONS, annotate=True, model=model)
    export_grid(result, "conv1", tmp_path / "grid.png", OPTIONS, model=model, annotate=True)
    for name in ("conv1_annotated.png", "grid.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)), expected)
    # a different title would be a different picture: the test can tell them apart
    other = annotate_grid(rgb, layout, "conv1", upscale=OPTIONS.upscale)
    assert other.shape != expected.shape or not np.array_equal(other, expected)


def test_every_sidecar_carries_the_same_provenance_block(captured, tmp_path):
    from featurescope.core.analysis.compare import compare_layer
    from featurescope.core.io.compare_export import export_comparison
    from featurescope.core.io.export import export_activations, export_grid, export_layers
    from featurescope.core.io.gradcam_export import export_grad_cam

    model, (result_a, result_b), (source_a, source_b) = captured
    export_layers(result_a, tmp_path / "layers", layers=["conv1"], formats="both",
                  options=OPTIONS, model=model, source_path=source_a)
    export_grid(result_a, "conv1", tmp_path / "grid.png", OPTIONS, model=model, source_path=source_a)
    export_activations(result_a, tmp_path / "acts.npz", model=model, source_path=source_a)
    export_grad_cam(model, result_a, tmp_path / "cam.png", source_path=source_a)
    comparison = compare_layer(result_a, result_b, "layer1.0.conv1")
    export_comparison(comparison, tmp_path / "compare", model=model, source_a=source_a,
                      source_b=source_b)

    sidecars = [tmp_path / "layers" / "featurescope.json", tmp_path / "grid.json",
                tmp_path / "acts.json", tmp_path / "cam.json",
                tmp_path / "compare" / "layer1.0.conv1_compare.json"]
    digest = hashlib.sha256(source_a.read_bytes()).hexdigest()
    blocks = []
    for path in sidecars:
        data = json.loads(path.read_text())
        assert list(data)[: len(PROVENANCE_KEYS)] == list(PROVENANCE_KEYS), path.name
        blocks.append(data)
        assert data["source_image"] == {"path": str(source_a.resolve()), "name": "a.png", "sha256": digest}
        assert data["model"] == {"name": "resnet18", "display_name": model.display_name,
                                 "weights": "untrained", "trained": False, "device": "cpu"}
        assert data["featurescope_version"] and data["created"]
    assert blocks[0]["options"] == blocks[1]["options"] == OPTIONS.to_dict()
    assert blocks[3]["options"] == {"colormap": "inferno", "alpha": 0.5}
    assert blocks[4]["image_b"]["sha256"] == hashlib.sha256(source_b.read_bytes()).hexdigest()
    with np.load(tmp_path / "acts.npz") as npz:
        assert sorted(npz.files) == sorted([*result_a.layers, "input"])
    assert [layer["name"] for layer in blocks[2]["layers"]] == list(result_a.layers)


def test_grad_cam_export_is_the_overlay_and_refuses_to_overwrite(captured, tmp_path):
    from featurescope.core.analysis.gradcam import compute_grad_cam, overlay
    from featurescope.core.io.gradcam_export import export_grad_cam

    model, (result, _), _ = captured
    cam = compute_grad_cam(model, result.input, "layer3.0.conv1", target=3)
    written = export_grad_cam(model, result, tmp_path / "cam.png", layer="layer3.0.conv1",
                              target=3, alpha=0.3)
    expected = overlay(model.deprocess(result.input), cam.map, colormap="inferno", alpha=0.3)
    assert np.abs(np.asarray(Image.open(written[0])).astype(int) - expected.astype(int)).max() <= 1
    info = json.loads(written[1].read_text())
    assert info["class_index"] == 3 and info["layer"] == "layer3.0.conv1"
    (tmp_path / "cam.png").unlink()  # the sidecar alone blocks a second export
    with pytest.raises(FileExistsExportError):
        export_grad_cam(model, result, tmp_path / "cam.png", cam=cam)
    assert not (tmp_path / "cam.png").exists()


def test_comparison_export_is_the_shared_scale_pictures(captured, tmp_path):
    from featurescope.core.analysis.compare import compare_layer, shared_index_grids
    from featurescope.core.io.compare_export import export_comparison

    model, (result_a, result_b), (source_a, source_b) = captured
    comparison = compare_layer(result_a, result_b, "maxpool")
    written = export_comparison(comparison, tmp_path, model=model, source_a=source_a,
                                source_b=source_b, colormap="gray", upscale=3)
    assert [p.name for p in written] == ["maxpool_a.png", "maxpool_b.png", "maxpool_difference.png",
                                         "maxpool_compare.json"]
    pictures, _ = shared_index_grids(comparison)
    lut = colormap_lut("gray")
    for key, path in zip(("a", "b", "difference"), written):
        expected = np.repeat(np.repeat(lut[pictures[key]], 3, axis=0), 3, axis=1)
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), expected)
    with pytest.raises(FileExistsExportError):
        export_comparison(comparison, tmp_path, model=model)


def test_a_pair_is_written_whole_or_not_at_all(captured, tmp_path, monkeypatch):
    from featurescope.core.io import export

    model, (result, _), _ = captured

    def full(*args, **kwargs):
        raise ExportError("the disk is full")

    monkeypatch.setattr(export, "write_json", full)
    with pytest.raises(ExportError):
        export.export_grid(result, "conv1", tmp_path / "grid.png", OPTIONS, model=model)
    assert list(tmp_path.iterdir()) == []  # no PNG without its sidecar


def test_read_only_file_system_says_so_and_names_the_folder(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(writers.os, "open", read_only)
    with pytest.raises(ExportError) as info:
        writers.write_png(tmp_path / "grid.png", np.zeros((2, 2, 3), np.uint8))
    text = str(info.value)
    assert "read-only file system" in text and str(tmp_path) in text
    assert "permission denied" not in text
