"""The index file under attack: damaged, truncated, empty and hand-edited files are refused
in one sentence (and never continued), --rebuild replaces only an index, one run per
output at a time, K capped by the number of images, sizes checked before the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featurescope as fs
from featurescope.cli.main import main
from featurescope.core.errors import IndexFileError
from featurescope.core.index import size as index_size
from featurescope.core.index.build import build_index
from featurescope.core.index.lock import IndexLock
from featurescope.core.index.store import open_index

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["conv1", "layer1.0.conv1"]
MODEL = ["-m", "resnet18", "-w", "none", "--input-size", "64", "-d", "cpu"]


@pytest.fixture(scope="module")
def model():
    return fs.load_model("resnet18", weights="none", device="cpu", input_size=64)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def good(model, folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("index") / "good.fsindex"
    build_index(model, folder, layers=LAYERS, top=3, workers=0, output=output)
    return output


def _edited(good: Path, target: Path, edit) -> Path:
    with np.load(good) as data:
        arrays = dict(data)
    meta = json.loads(str(arrays["meta"]))
    edit(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta)) if not isinstance(arrays["meta"], str) else arrays["meta"]
    with open(target, "wb") as handle:
        np.savez(handle, **arrays)
    return target


def _damaged(good: Path, folder: Path) -> dict[str, Path]:
    raw = good.read_bytes()
    cases = {}
    (folder / "empty.fsindex").write_bytes(b"")
    cases["empty"] = folder / "empty.fsindex"
    (folder / "cut.fsindex").write_bytes(raw[: len(raw) // 3])
    cases["truncated"] = folder / "cut.fsindex"
    corrupt = bytearray(raw)
    corrupt[len(raw) // 2: len(raw) // 2 + 64] = b"x" * 64
    (folder / "corrupt.fsindex").write_bytes(bytes(corrupt))
    cases["corrupt"] = folder / "corrupt.fsindex"

    def drop_k(arrays, meta):
        del meta["k"]

    def no_field(arrays, meta):
        meta["layers"][0]["field"] = {}

    def short_column(arrays, meta):
        arrays["files/height"] = arrays["files/height"][:1]

    def far_ids(arrays, meta):
        arrays["layers/conv1/ids"] = arrays["layers/conv1/ids"] + 100

    def no_paths(arrays, meta):
        del arrays["files/path"]

    def few_channels(arrays, meta):
        arrays["layers/conv1/values"] = arrays["layers/conv1/values"][:3]

    def outside(arrays, meta):
        arrays["layers/conv1/positions"] = arrays["layers/conv1/positions"] + 1000

    def no_layer(arrays, meta):
        del arrays["layers/conv1/sums"]

    for name, edit in [("no k", drop_k), ("no field", no_field), ("short column", short_column),
                       ("far ids", far_ids), ("no paths", no_paths), ("few channels", few_channels),
                       ("outside", outside), ("no layer", no_layer)]:
        cases[name] = _edited(good, folder / f"{name.replace(' ', '_')}.fsindex", edit)
    return cases


def test_damaged_index_files_are_one_sentence_each_and_never_continued(model, folder, good, tmp_path, capsys):
    open_index(good).top("conv1", 0)  # the untouched one reads
    for case, path in _damaged(good, tmp_path).items():
        before = path.read_bytes()
        with pytest.raises(IndexFileError) as refused:
            index = open_index(path)
            index.top("conv1", 0)  # a hand edit that slipped through would fail here
        message = str(refused.value)
        assert path.name in message and message.count(". ") == 0 and message.endswith("."), (case, message)
        assert main(["examples", str(path), "--layer", "conv1", "--channel", "0"]) == 2, case
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("featurescope: "), (case, err)
        with pytest.raises(IndexFileError):  # `index` refuses to resume from it
            build_index(model, folder, layers=LAYERS, top=3, workers=0, output=path)
        assert path.read_bytes() == before, case
        assert not any(p.name.endswith(".lock") for p in tmp_path.iterdir()), case


def test_rebuild_replaces_only_an_index(model, folder, good, tmp_path):
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (20, 20), "red").save(photo)
    before = photo.read_bytes()
    for rebuild in (True, False):
        with pytest.raises(IndexFileError, match="photo.jpg"):
            build_index(model, folder, layers=LAYERS, workers=0, output=photo, rebuild=rebuild)
    assert photo.read_bytes() == before
    assert main(["index", str(folder), *MODEL, "--workers", "0", "-o", str(photo), "--rebuild"]) == 2
    assert photo.read_bytes() == before
    with pytest.raises(IndexFileError, match="is a folder"):
        build_index(model, folder, layers=LAYERS, workers=0, output=tmp_path)
    # an index, even a damaged one whose description still reads, may be rebuilt
    damaged = _damaged(good, tmp_path)["far ids"]
    rebuilt = build_index(model, folder, layers=LAYERS, top=3, workers=0, output=damaged, rebuild=True)
    assert open_index(damaged).images == rebuilt.images == 4


def test_a_second_run_on_one_output_is_refused_while_the_first_holds_it(model, folder, tmp_path):
    output = tmp_path / "shared.fsindex"
    with IndexLock(output):
        with pytest.raises(IndexFileError, match="another featurescope index run"):
            build_index(model, folder, layers=LAYERS, workers=0, output=output)
        assert not output.exists()
    build_index(model, folder, layers=LAYERS, workers=0, output=output)  # free again
    assert not (tmp_path / ".shared.fsindex.lock").exists()


def test_a_lock_left_by_a_killed_run_does_not_block_the_next(model, folder, tmp_path):
    output = tmp_path / "killed.fsindex"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from featurescope.core.index.lock import IndexLock; "
         f"IndexLock({str(output)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexFileError, match=f"process {holder.pid}"):
            IndexLock(output).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert (tmp_path / ".killed.fsindex.lock").exists()  # left behind, but not held
    build_index(model, folder, layers=LAYERS, workers=0, output=output)
    assert open_index(output).images == 4


def test_k_is_capped_by_the_number_of_images_and_grows_as_images_arrive(model, folder, tmp_path):
    grown = tmp_path / "grown"
    grown.mkdir()
    for path in sorted(folder.iterdir())[:2]:
        (grown / path.name).write_bytes(path.read_bytes())
    output = tmp_path / "capped.fsindex"
    index = build_index(model, grown, layers=LAYERS, top=100000, workers=0, output=output)
    assert index.k == 2 and open_index(output).topk["conv1"].values.shape[1] == 2
    assert output.stat().st_size < 50_000
    for path in sorted(folder.iterdir())[2:]:
        (grown / path.name).write_bytes(path.read_bytes())
    resumed = build_index(model, grown, layers=LAYERS, top=100000, workers=0, output=output)
    fresh = build_index(model, grown, layers=LAYERS, top=4, workers=0)
    assert resumed.k == 4
    for layer in LAYERS:
        for channel in (0, 7):
            assert [(e.path, e.activation) for e in resumed.top(layer, channel, 4)] == \
                   [(e.path, e.activation) for e in fresh.top(layer, channel, 4)]


def test_an_index_too_big_for_memory_or_disk_is_refused_before_it_starts(model, folder, tmp_path, monkeypatch):
    output = tmp_path / "huge.fsindex"
    monkeypatch.setattr(index_size, "available_memory", lambda: 10_000)
    with pytest.raises(IndexFileError, match="of memory"):
        build_index(model, folder, layers=LAYERS, top=9, workers=0, output=output)
    monkeypatch.setattr(index_size, "available_memory", lambda: None)
    monkeypatch.setattr(index_size, "free_disk", lambda folder: 10_000)
    with pytest.raises(IndexFileError, match="on disk"):
        build_index(model, folder, layers=LAYERS, top=9, workers=0, output=output)
    assert list(tmp_path.iterdir()) == []
    # the estimate is what the layers' arrays really take (the file adds its table and headers)
    monkeypatch.undo()
    index = build_index(model, folder, layers=LAYERS, top=3, workers=0, output=output)
    channels = sum(index.topk[name].values.shape[0] for name in LAYERS)
    stored = sum(getattr(index.topk[name], column).nbytes for name in LAYERS
                 for column in ("values", "ids", "positions", "sums", "positive"))
    assert index_size.index_bytes(channels, 3) == stored < output.stat().st_size


@pytest.mark.parametrize("settings, words", [
    ({"workers": -1}, "--workers"), ({"batch_size": 0}, "batch size"), ({"top": 0}, "--top")])
def test_impossible_settings_are_refused_up_front(model, folder, tmp_path, settings, words):
    arguments = {"workers": 0, **settings}
    with pytest.raises(IndexFileError, match=words):
        build_index(model, folder, layers=LAYERS, output=tmp_path / "x.fsindex", **arguments)
    assert list(tmp_path.iterdir()) == []
