"""The atlas: labels against a brute-force loop over generated sub-folders, the site's
files and atlas.json, resuming from the cache, and the Ray engine against the local one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featurescope as fs
from featurescope.core.atlas.build import AtlasError, build_atlas
from featurescope.core.atlas.labels import NOT_SELECTIVE, unit_labels
from featurescope.core.atlas.units import AtlasSettings, VARIANTS
from featurescope.core.index.build import build_index
from featurescope.core.optvis.cache import OptvisCache

KINDS = ("blobs", "rings", "stripes")  # the sub-folders of the concept_folder fixture
LAYERS = ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
SETTINGS = AtlasSettings(steps=2, size=32, top=3)


@pytest.fixture(scope="module")
def model():
    return fs.load_model("resnet18", weights="none", device="cpu", input_size=64)


@pytest.fixture(scope="module")
def concepts(tmp_path_factory, concept_folder):
    return concept_folder(tmp_path_factory.mktemp("concepts"))


@pytest.fixture(scope="module")
def index(model, concepts, tmp_path_factory):
    return build_index(model, concepts, layers=LAYERS, top=3, batch_size=4, workers=0,
                       output=tmp_path_factory.mktemp("index") / "concepts.npz")


def test_labels_equal_a_brute_force_loop(model, concepts, index):
    for layer in LAYERS:
        per_kind = {}
        for kind in KINDS:  # every image on its own, spatial maximum per channel
            maxima = [fs.capture(model, fs.load_image(path), layers=[layer])[layer].amax(dim=(1, 2)).numpy()
                      for path in sorted((concepts / kind).iterdir())]
            per_kind[kind] = np.mean(maxima, axis=0)
        labels = unit_labels(index, layer)
        assert index.groups == list(KINDS)
        for channel, unit in enumerate(labels):
            means = [float(per_kind[k][channel]) for k in KINDS]
            np.testing.assert_allclose(unit.means, means, rtol=1e-4, atol=1e-5)
            shifted = [m - min(min(means), 0.0) for m in means]
            best = int(np.argmax(shifted))
            rest = (sum(shifted) - shifted[best]) / (len(KINDS) - 1)
            expected = (shifted[best] - rest) / (shifted[best] + rest) if shifted[best] + rest > 0 else 0.0
            assert unit.best == KINDS[best]
            assert unit.selectivity == pytest.approx(expected, abs=1e-5)
            assert unit.label == (KINDS[best] if expected >= NOT_SELECTIVE else None)


def test_the_index_keeps_its_sub_folder_sums_on_disk(index):
    from featurescope.core.index.store import open_index

    again = open_index(index.path)
    assert again.groups == list(KINDS)
    np.testing.assert_allclose(again.group_means("conv1"), index.group_means("conv1"))


def test_a_folder_without_sub_folders_gives_no_labels(model, tmp_path):
    for i in range(2):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    flat = build_index(model, tmp_path, layers=["conv1"], top=2, workers=0)
    assert flat.groups == [] and flat.group_means("conv1") is None
    assert all(u.label is None and u.best is None for u in unit_labels(flat, "conv1"))


def _site_files(site: Path) -> set:
    return {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}


def test_the_site_has_every_page_picture_and_its_json(model, index, tmp_path):
    cache = OptvisCache(tmp_path / "cache")
    site = tmp_path / "site"
    report = build_atlas(model, site, index=index.path, channels="0-2", settings=SETTINGS, cache=cache)
    assert report.units == 9 and report.rendered == 9 * len(VARIANTS)
    files = _site_files(site)
    for layer in LAYERS:
        assert f"{layer}/index.html" in files
        for channel in range(3):
            assert f"{layer}/{channel}.html" in files  # the stable address a paper links
            for name, _o, _s in VARIANTS:
                assert f"{layer}/img/{channel}-{name}.jpg" in files
    data = json.loads((site / "atlas.json").read_text())
    assert data["model"]["name"] == "resnet18" and data["model"]["trained"] is False
    assert [layer["name"] for layer in data["layers"]] == LAYERS
    unit = data["layers"][2]["units"][2]
    assert {"channel", "label", "selectivity", "fired", "page", "visualization", "examples"} <= set(unit)
    assert unit["page"] == "layer1.0.conv2/2.html" and (site / unit["visualization"]).is_file()
    expected = [e.activation for e in index.top("layer1.0.conv2", 2, 3)]
    assert [e["activation"] for e in unit["examples"]] == pytest.approx(expected)
    assert all(e["path"].split("/")[0] in KINDS and (site / e["crop"]).is_file() for e in unit["examples"])
    assert unit["label"] == unit_labels(index, "layer1.0.conv2")[2].label
    # the units that feed it (the links have their own test) are on its page, linked
    assert [e["layer"] for e in unit["inputs"]] == ["layer1.0.conv1"] * 5
    page = (site / "layer1.0.conv2" / "2.html").read_text()
    assert "Fed most by" in page
    for entry in unit["inputs"]:  # a link where the feeding unit has a page on this site
        linked = f'href="../layer1.0.conv1/{entry["channel"]}.html"' in page
        assert linked == (entry["channel"] < 3) and entry["page"] == (
            f'layer1.0.conv1/{entry["channel"]}.html' if entry["channel"] < 3 else None)


def test_units_link_to_the_units_that_feed_them_and_the_classes_they_vote_for(tmp_path):
    from featurescope.core.atlas.links import unit_links
    from featurescope.core.circuits.expanded import expanded_weights

    net = fs.load_model("resnet18", weights="none", device="cpu", input_size=64)
    module = net.module
    for bn in module.modules():  # random batch-norm statistics, so the scales matter
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
    links = unit_links(net, [("layer1.0.conv2", [3]), ("layer4.1.conv2", [7])])
    # inputs: the summed expanded kernel from the layer that feeds it, strongest first
    net_weights = expanded_weights(net, "layer1.0.conv2", "layer1.0.conv1").sum(dim=(2, 3))[3].numpy()
    inputs = links[("layer1.0.conv2", 3)]["inputs"]
    assert [e["layer"] for e in inputs] == ["layer1.0.conv1"] * 5
    assert [e["channel"] for e in inputs] == list(np.argsort(-np.abs(net_weights), kind="stable")[:5])
    assert [e["weight"] for e in inputs] == pytest.approx(net_weights[[e["channel"] for e in inputs]], rel=1e-5)
    # outputs: the next mixing layer (layer1.0's second conv feeds layer1.1.conv1)
    assert {e["layer"] for e in links[("layer1.0.conv2", 3)]["outputs"]} == {"layer1.1.conv1"}
    # votes of the last conv: through bn2, the residual sum, ReLU (taken out), the average
    # pool and fc, one unit of channel 7 moves class k by fc.weight[k, 7] * bn2's scale
    bn2 = module.layer4[1].bn2
    scale = (bn2.weight / torch.sqrt(bn2.running_var + bn2.eps))[7].item()
    expected = module.fc.weight[:, 7].detach().numpy() * scale
    votes = links[("layer4.1.conv2", 7)]["votes"]
    best = np.argsort(-expected, kind="stable")[:5]
    assert [v["label"] for v in votes] == [net.categories[k] for k in best]
    assert [v["weight"] for v in votes] == pytest.approx(expected[best], rel=1e-4, abs=1e-6)


def test_an_atlas_continues_from_the_cache_and_draws_only_new_units(model, index, tmp_path):
    cache = OptvisCache(tmp_path / "cache")
    site = tmp_path / "site"
    first = build_atlas(model, site, index=index.path, layers=["conv1"], channels="0-1",
                        settings=SETTINGS, cache=cache, links=None)
    again = build_atlas(model, site, index=index.path, layers=["conv1"], channels="0-1",
                        settings=SETTINGS, cache=cache, links=None)
    more = build_atlas(model, site, index=index.path, layers=["conv1"], channels="0-3",
                       settings=SETTINGS, cache=cache, links=None)
    assert (first.rendered, again.rendered, more.rendered) == (2 * len(VARIANTS), 0, 2 * len(VARIANTS))
    assert {"conv1/3.html", "conv1/img/3-channel.jpg"} <= _site_files(site)


def test_a_stopped_atlas_writes_what_is_done(model, index, tmp_path):
    cancel = fs.CancelToken()

    def stop_after_first(done, total, text):
        if done >= 3:
            cancel.cancel()

    site, cache = tmp_path / "site", OptvisCache(tmp_path / "cache")
    with pytest.raises(fs.Cancelled):
        build_atlas(model, site, index=index.path, layers=["conv1"], channels="0-5",
                    settings=SETTINGS, cache=cache, progress=stop_after_first, cancel=cancel, links=None)
    # the first piece (every unit's main picture) was done: tiles and pages are there
    page = (site / "conv1" / "5.html").read_text()
    assert "img/5-channel.jpg" in page and "img/5-negative.jpg" not in page
    assert (site / "index.html").is_file()
    again = build_atlas(model, site, index=index.path, layers=["conv1"], channels="0-5",
                        settings=SETTINGS, cache=cache, links=None)
    assert again.rendered == 6 * (len(VARIANTS) - 1)
    assert "img/5-negative.jpg" in (site / "conv1" / "5.html").read_text()


def test_wrong_requests_get_one_sentence(model, index, tmp_path):
    with pytest.raises(AtlasError, match="needs dataset examples"):
        build_atlas(model, tmp_path / "s")
    with pytest.raises(AtlasError, match="holds no layer 'layer4.1.conv2'"):
        build_atlas(model, tmp_path / "s", index=index.path, layers=["layer4.1.conv2"])
    with pytest.raises(AtlasError, match="64 channels"):
        build_atlas(model, tmp_path / "s", index=index.path, layers=["conv1"], channels="100-120")
    other = fs.load_model("resnet34", weights="none", device="cpu", input_size=64)
    with pytest.raises(fs.FeaturescopeError, match="built with resnet18"):
        build_atlas(other, tmp_path / "s", index=index.path)


def test_a_unit_stays_under_200_kb_at_the_default_picture_size(model, index, tmp_path):
    site = tmp_path / "site"
    build_atlas(model, site, index=index.path, layers=["layer1.0.conv2"], channels="0-3",
                settings=AtlasSettings(steps=2, top=9), cache=OptvisCache(tmp_path / "cache"), links=None)
    per_unit = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and p.name != "examples-index.npz") / 4
    assert per_unit <= 200_000


@pytest.mark.ray
def test_the_ray_engine_draws_the_same_pictures(model, index, tmp_path):
    pytest.importorskip("ray")
    local, remote = OptvisCache(tmp_path / "local"), OptvisCache(tmp_path / "ray")
    build_atlas(model, tmp_path / "a", index=index.path, layers=["conv1"], channels="0-3",
                settings=SETTINGS, cache=local, links=None)
    build_atlas(model, tmp_path / "b", index=index.path, layers=["conv1"], channels="0-3",
                settings=SETTINGS, cache=remote, engine="ray", workers=2, links=None)
    from featurescope.core.atlas.units import cache_settings

    for name, _o, _s in VARIANTS:
        keys = cache_settings(model, SETTINGS, name)
        for channel in range(4):
            a, b = local.get(model, "conv1", channel, keys), remote.get(model, "conv1", channel, keys)
            assert np.abs(a[0].astype(int) - b[0].astype(int)).max() <= 1
            assert a[1] == pytest.approx(b[1], rel=1e-4, abs=1e-5)
