"""The dataset index against a brute-force loop with plain hooks, the receptive-field and
preprocessing maths, resume, incremental update and the Ray engine."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featurescope as fs
from featurescope.core.index.build import build_index
from featurescope.core.index.geometry import Preprocessing, preprocessing_of
from featurescope.core.index.store import STATE_TODO, open_index
from featurescope.core.io.images import load_image
from featurescope.core.progress import CancelToken, Cancelled

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "resources" / "samples"
LAYERS = ["conv1", "maxpool", "layer1.0.conv2", "layer3.1.conv1", "layer4.1.conv2"]
BROKEN = {"notes.jpg", "cut.jpg", "empty.png"}


@pytest.fixture(scope="module")
def model():
    # Small input so the whole module runs in seconds; resize 73, crop 64.
    return fs.load_model("resnet18", weights="none", device="cpu", input_size=64)


def _generated(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sizes = [(90, 150), (200, 120), (64, 64), (33, 250), (120, 90), (150, 150)]
    formats = ["png", "jpg", "bmp", "webp", "tif", "gif"]
    for i, ((h, w), ext) in enumerate(zip(sizes, formats)):
        if i % 2:
            y, x = np.mgrid[0:h, 0:w]
            array = np.stack([x * 255 // w, y * 255 // h, (x + y) % 256], 2).astype(np.uint8)
        else:
            array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        target = folder / ("nested" if i >= 3 else ".") / f"gen{i}.{ext}"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(target)
    Image.fromarray(rng.integers(0, 256, (80, 100), dtype=np.uint8), "L").save(folder / "gray.png")


def make_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for sample in SAMPLES.iterdir():
        if sample.suffix in (".png", ".jpg"):
            shutil.copy(sample, folder / sample.name)
    _generated(folder)
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "cut.jpg").write_bytes((SAMPLES / "rocket.jpg").read_bytes()[:2000])
    (folder / "empty.png").write_bytes(b"")
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    return folder


def brute_force(model, folder: Path, layers, k):
    """Per layer: (values (C, k), paths (C, k), maps) from one image at a time, plain hooks."""
    outputs = {}
    modules = dict(model.module.named_modules())
    handles = [modules[name].register_forward_hook(
        lambda m, i, o, name=name: outputs.__setitem__(name, o.detach().clone())) for name in layers]
    maxima = {name: [] for name in layers}
    maps = {name: [] for name in layers}
    paths = []
    try:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                image = load_image(path)
            except fs.FeaturescopeError:
                continue
            with torch.no_grad():
                model.module(model.preprocess(image))
            paths.append(path.relative_to(folder).as_posix())
            for name in layers:
                fmap = outputs[name][0]
                maps[name].append(fmap)
                maxima[name].append(fmap.flatten(1).amax(1))
    finally:
        for handle in handles:
            handle.remove()
    result = {}
    for name in layers:
        values = torch.stack(maxima[name], 1).numpy()  # (C, N)
        order = np.lexsort((np.broadcast_to(np.arange(len(paths)), values.shape), -values), axis=1)
        result[name] = (values, order[:, :k], maps[name])
    return paths, result


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def built(model, folder):
    return build_index(model, folder, layers=LAYERS, top=4, batch_size=3, workers=1)


def test_top_k_matches_a_brute_force_loop_with_plain_hooks(model, folder, built):
    paths, expected = brute_force(model, folder, LAYERS, 4)
    assert built.images == len(paths) == 11
    for name in LAYERS:
        values, order, maps = expected[name]
        channels = values.shape[0]
        for channel in range(channels):
            examples = built.top(name, channel, k=4)
            assert [Path(e.path).relative_to(folder).as_posix() for e in examples] == \
                [paths[i] for i in order[channel]], (name, channel)
            assert np.allclose([e.activation for e in examples], values[channel, order[channel]], atol=1e-5)
            for example, image in zip(examples, order[channel]):
                fmap = maps[image][channel]
                y, x = example.position
                assert fmap[y, x].item() == pytest.approx(fmap.max().item(), abs=1e-5)
        assert np.allclose(built.channel_means(name), values.mean(1), atol=1e-5)
        assert np.allclose(built.fired_fraction(name), (values > 0).mean(1))
        assert built.dead_channels(name) == [int(c) for c in np.flatnonzero((values > 0).sum(1) == 0)]


def test_broken_files_are_skipped_with_one_reason_each(built):
    skipped = {entry["path"]: entry["reason"] for entry in built.skipped}
    assert set(skipped) == BROKEN
    assert "truncated" in skipped["cut.jpg"] or "damaged" in skipped["cut.jpg"]
    assert "empty" in skipped["empty.png"]
    assert all(reason.endswith(".") and "\n" not in reason for reason in skipped.values())
    assert "readme.txt" not in set(str(p) for p in built.files["path"])


def test_boxes_are_the_receptive_field_mapped_through_resize_and_crop(model, built):
    prep = built.preprocessing
    assert prep == preprocessing_of(model) and prep.resize == 73 and prep.crop == (64, 64)
    for name in LAYERS:
        field = fs.receptive_field(model, name)
        for example in built.top(name, 0):
            assert example.input_box == field.box(*example.position)
            with Image.open(example.path) as image:
                width, height = image.size
            top, left, bottom, right = example.box
            assert 0 <= top < bottom <= height and 0 <= left < right <= width


def test_box_mapping_by_hand():
    prep = Preprocessing(256, (224, 224), (0.5,) * 3, (0.5,) * 3)
    # 300 x 400: resized to 256 x 341, crop offset (16, 58); the whole crop maps to
    # rows 16*300/256 = 18.75 .. 240*300/256 = 281.25, columns 58*400/341 .. 282*400/341.
    assert prep.resized_size(300, 400) == (256, 341)
    assert prep.crop_offset(300, 400) == (16, 58)
    assert prep.to_original((0, 0, 224, 224), 300, 400) == (18, 68, 282, 331)
    # a field hanging over the edge is clipped to the original image: rows (-20+16)*300/256
    # < 0 .. 26*300/256 = 30.5, columns 38*400/341 = 44.6 .. 68*400/341 = 79.8, rounded out
    assert prep.to_original((-20, -20, 10, 10), 300, 400) == (0, 44, 31, 80)


def test_box_mapping_follows_the_pixels(model):
    """A picture whose colours encode their own coordinates: after the model's own
    preprocessing, the pixel at each corner of an input box comes from inside the box."""
    h, w = 150, 260
    y, x = np.mgrid[0:h, 0:w]
    coded = np.stack([x * 255 / (w - 1), y * 255 / (h - 1), np.zeros_like(x)], 2).round().astype(np.uint8)
    seen = model.deprocess(model.preprocess(Image.fromarray(coded))).astype(float)
    prep = preprocessing_of(model)
    for box in [(0, 0, 64, 64), (10, 20, 30, 50), (40, 3, 64, 9)]:
        top, left, bottom, right = prep.to_original(box, h, w)
        for iy, ix in [(box[0], box[1]), (box[2] - 1, box[3] - 1)]:
            oy = seen[iy, ix, 1] / 255 * (h - 1)
            ox = seen[iy, ix, 0] / 255 * (w - 1)
            assert top - 1.5 <= oy <= bottom + 0.5 and left - 1.5 <= ox <= right + 0.5


def test_saved_index_reads_back_with_its_records(model, folder, built, tmp_path):
    path = built.save(tmp_path / "photos.fsindex")
    again = open_index(path)
    assert again.model["name"] == "resnet18" and again.model["weights"] == "untrained"
    assert again.layers == LAYERS and again.k == 4 and again.complete
    assert again.preprocessing == built.preprocessing
    row = list(again.files["path"]).index("chelsea.png")
    stat = (folder / "chelsea.png").stat()
    assert again.files["size"][row] == stat.st_size and again.files["mtime_ns"][row] == stat.st_mtime_ns
    for name in LAYERS:
        assert [e.to_dict() for e in again.top(name, 1, 2)] == [e.to_dict() for e in built.top(name, 1, 2)]
    assert again.matches_model(model) is None
    other = fs.load_model("resnet18", weights="none", device="cpu", input_size=64)
    other.weights_label = "mine.pth"
    assert "mine.pth" in again.matches_model(other)
    assert len(again.top(LAYERS[0], 0, 9)) == 4  # never more than the index keeps
    with pytest.raises(fs.FeaturescopeError, match="no layer"):
        again.top("fc", 0)


def _same(a, b):
    """Same images in the same order, values within 1e-5. Conv outputs on CPU differ in the
    last bits with the batch an image lands in, so two identical images (a near tie)
    may come in either order; exact ties are ordered by path."""
    for name in a.layers:
        ta, tb = a.topk[name], b.topk[name]
        assert ta.ids.shape == tb.ids.shape and ta.count == tb.count
        assert np.allclose(ta.values, tb.values, atol=1e-5)
        assert (ta.positive == tb.positive).all()
        assert np.allclose(ta.sums, tb.sums, atol=1e-4)
        for channel, (row_a, row_b) in enumerate(zip(ta.ids, tb.ids)):
            pa = [a.files["path"][i] if i >= 0 else None for i in row_a]
            pb = [b.files["path"][i] if i >= 0 else None for i in row_b]
            values = ta.values[channel]
            for i, (x, y) in enumerate(zip(pa, pb)):
                if x == y:
                    assert (ta.positions[channel, i] == tb.positions[channel, i]).all()
                    continue
                others = np.delete(values, i)
                near = i == len(pa) - 1 or np.min(np.abs(others - values[i])) < 1e-5
                assert near, (name, channel, pa, pb)


def test_an_interrupted_run_resumes_where_it_stopped(model, folder, built, tmp_path):
    output = tmp_path / "resume.fsindex"
    cancel = CancelToken()
    seen = []

    def stop_after_first_batch(done, total, text):
        seen.append((done, total))
        if done >= 3:
            cancel.cancel()

    with pytest.raises(Cancelled):
        build_index(model, folder, layers=LAYERS, top=4, batch_size=3, workers=0,
                    progress=stop_after_first_batch, cancel=cancel, output=output)
    partial = open_index(output)
    assert not partial.complete
    assert (partial.files["state"] != STATE_TODO).sum() == 3
    totals = []
    finished = build_index(model, folder, layers=LAYERS, top=4, batch_size=3, workers=0,
                           progress=lambda d, t, s: totals.append(t), output=output)
    assert totals[0] == seen[0][1] - 3  # only the files not read before
    assert finished.complete and open_index(output).complete
    _same(finished, built)


def test_adding_images_reads_only_the_new_ones_and_a_changed_file_is_read_again(model, folder, built, tmp_path):
    copy = tmp_path / "growing"
    shutil.copytree(folder, copy)
    output = tmp_path / "grow.fsindex"
    build_index(model, copy, layers=LAYERS, top=4, batch_size=4, workers=0, output=output)
    _generated(copy / "more", seed=7)
    totals = []
    grown = build_index(model, copy, layers=LAYERS, top=4, batch_size=4, workers=0, output=output,
                        progress=lambda d, t, s: totals.append(t))
    assert totals[0] == 7
    _same(grown, build_index(model, copy, layers=LAYERS, top=4, batch_size=5, workers=0))

    changed = copy / "gen0.png"
    Image.fromarray(np.full((90, 150, 3), 255, np.uint8)).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    totals.clear()
    again = build_index(model, copy, layers=LAYERS, top=4, batch_size=4, workers=0, output=output,
                        progress=lambda d, t, s: totals.append(t))
    assert totals[0] == again.images + len(BROKEN)  # everything read again: exact sums
    _same(again, build_index(model, copy, layers=LAYERS, top=4, batch_size=2, workers=0))


def test_continuing_with_other_settings_is_refused(model, folder, tmp_path):
    output = tmp_path / "one.fsindex"
    build_index(model, folder, layers=LAYERS[:1], top=2, batch_size=8, workers=0, output=output)
    with pytest.raises(fs.FeaturescopeError, match="keeps the top 2"):
        build_index(model, folder, layers=LAYERS[:1], top=3, workers=0, output=output)
    rebuilt = build_index(model, folder, layers=LAYERS[:1], top=3, workers=0, output=output, rebuild=True)
    assert rebuilt.k == 3
    with pytest.raises(fs.FeaturescopeError, match="not a featurescope index"):
        open_index(folder / "chelsea.png")
    with pytest.raises(fs.FeaturescopeError, match="folder"):
        build_index(model, folder / "chelsea.png", workers=0)


def test_contact_sheet_shows_each_crop(built):
    from featurescope.core.index.sheet import contact_sheet, example_crop

    examples = built.top("layer3.1.conv1", 2)
    sheet = contact_sheet(examples, tile=64)
    assert sheet.dtype == np.uint8 and sheet.shape[2] == 3
    assert sheet.shape[1] == 2 * (64 + 4) + 4  # two columns for four examples
    crop = example_crop(examples[0])
    top, left, bottom, right = examples[0].box
    assert crop.size == (right - left, bottom - top)


@pytest.mark.ray
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_ray_engine_gives_the_same_index_as_the_local_engine(model, folder, built):
    pytest.importorskip("ray", reason="the Ray engine needs ray (pip install 'featurescope[cluster]')")
    on_ray = build_index(model, folder, layers=LAYERS, top=4, batch_size=4, workers=2, engine="ray")
    assert on_ray.skipped and {e["path"] for e in on_ray.skipped} == BROKEN
    _same(on_ray, built)


def test_overlay_crop_is_the_networks_view_with_the_map_over_it(model, built):
    from featurescope.core.index.sheet import overlay_crop
    from featurescope.core.render.grids import colormap_lut

    example = built.top("layer3.1.conv1", 3, 1)[0]
    crop = np.asarray(overlay_crop(model, example, "layer3.1.conv1", 3, alpha=1.0))
    top, left, bottom, right = example.input_box
    assert crop.shape == (bottom - top, right - left, 3)
    # with the map fully opaque, the hottest colour sits where the channel peaked
    hottest = colormap_lut("inferno")[255]
    assert (np.abs(crop.astype(int) - hottest).sum(2) <= 3).any()
