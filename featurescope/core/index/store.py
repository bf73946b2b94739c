"""The index file and its queries.

One ``.npz`` file (a zip of plain arrays plus one JSON string), written atomically, so
that a checkpoint is never half written and an interrupted run leaves the last good one:

- ``meta``: JSON: format, featurescope version, the model (name, weights), the
  preprocessing, the layers (channels, map size, receptive field), K, the folder, whether
  the run finished, and the skipped files with one reason each;
- ``files/path``, ``files/size``, ``files/mtime_ns``, ``files/height``, ``files/width``,
  ``files/state`` (0 not read yet, 1 indexed, 2 skipped): the file table;
- ``layers/<name>/values|ids|positions|sums|positive``: each layer's top-K.

Why NPZ: it needs nothing beyond numpy, any Python reads it (``np.load``) without
featurescope and without pickles, the arrays are stored raw (a 10,000-channel index with
K = 9 is about 2 MB) and the whole file is replaced at once, which is what resume needs.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from featurescope.core.errors import IndexFileError
from featurescope.core.index.geometry import Preprocessing
from featurescope.core.index.integrity import problem_of
from featurescope.core.index.reduce import LayerTopK
from featurescope.core.index.walk import FileRecord

FORMAT = "featurescope-index/1"
STATE_TODO, STATE_OK, STATE_SKIPPED = 0, 1, 2


@dataclass(frozen=True)
class Example:
    """One image that excites a channel: ``path`` (absolute), ``activation`` (the spatial
    maximum), ``position`` (y, x) of that maximum in the feature map, ``box`` (top, left,
    bottom, right; ends exclusive) of its receptive field in the original image's pixels,
    ``input_box`` the same in network-input pixels, ``rank`` 0 for the best; ``size`` and
    ``mtime_ns``: the file's as it was indexed (-1: not known)."""

    path: str
    activation: float
    position: tuple[int, int]
    box: tuple[int, int, int, int]
    input_box: tuple[int, int, int, int]
    rank: int
    size: int = -1
    mtime_ns: int = -1

    def problem(self) -> str:
        """"" when the file is still the one indexed, else "missing" or "changed" (its size
        or modification time differs: the box may no longer lie on what the unit saw).
        The same test as the index's own when it decides to read a file again."""
        import os

        try:
            stat = os.stat(self.path)
        except OSError:
            return "missing"
        if self.size >= 0 and (stat.st_size != self.size or stat.st_mtime_ns != self.mtime_ns):
            return "changed"
        return ""

    def to_dict(self) -> dict:
        return {"path": self.path, "activation": self.activation,
                "position": list(self.position), "box": list(self.box),
                "file": self.problem() or "ok"}


@dataclass
class LayerEntry:
    """What the index knows of one layer: channels, map shape and receptive field."""

    name: str
    channels: int
    shape: tuple[int, int]
    field: dict  # size_hw, jump_hw, start_hw, input_size, output_shape


class Index:
    """A folder's dataset examples. Build with ``build_index``, open with :func:`open_index`."""

    def __init__(self, meta: dict, files: dict, layers: dict[str, LayerTopK]):
        self.meta = meta
        self.files = files  # column -> array
        self.topk = layers
        self.path: Optional[Path] = None

    # --- what it is ---------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return Path(self.meta["folder"])

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def layers(self) -> list[str]:
        return [entry["name"] for entry in self.meta["layers"]]

    @property
    def model(self) -> dict:
        return self.meta["model"]

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.meta["preprocessing"])

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    @property
    def skipped(self) -> list[dict]:
        """[{"path", "reason"}] for every file that could not be read."""
        return list(self.meta.get("skipped", []))

    @property
    def images(self) -> int:
        """How many images were indexed (files read successfully)."""
        return int((self.files["state"] == STATE_OK).sum())

    def layer_entry(self, layer: str) -> dict:
        for entry in self.meta["layers"]:
            if entry["name"] == layer:
                return entry
        raise IndexFileError(f"The index has no layer {layer!r}; it holds "
                          f"{', '.join(self.layers[:6])}{' ...' if len(self.layers) > 6 else ''}.")

    def matches_model(self, model) -> Optional[str]:
        """None when ``model`` (a LoadedModel) is the one indexed, else a sentence why not."""
        mine = self.model
        name = getattr(model, "name", None)
        weights = getattr(model, "weights_label", None)
        if name != mine.get("name") or weights != mine.get("weights"):
            return (f"This index was built with {mine.get('display_name')}, but "
                    f"{getattr(model, 'display_name', name)} is loaded; its examples describe "
                    "the other model's channels.")
        return None

    # --- queries ------------------------------------------------------------------------
    def _layer(self, layer: str) -> LayerTopK:
        self.layer_entry(layer)
        return self.topk[layer]

    @property
    def unread(self) -> int:
        """Files listed but not read yet: an interrupted run (``complete`` is False)."""
        return int((self.files["state"] == STATE_TODO).sum())

    def top(self, layer: str, channel: int, k: int = 9, root=None) -> list[Example]:
        """The ``k`` images that excite ``channel`` of ``layer`` most, best first: at most
        the index's K (``index.k``), fewer when fewer images were indexed. ``root``: where
        the indexed folder is now, when it was moved (the paths are kept relative to it)."""
        data = self._layer(layer)
        channel = int(channel)
        if not 0 <= channel < data.values.shape[0]:
            raise IndexFileError(f"{layer} has {data.values.shape[0]} channels; there is no "
                                 f"channel {channel}.")
        if int(k) < 1:
            raise IndexFileError(f"k must be at least 1, not {k}.")
        k = min(int(k), self.k)
        entry = self.layer_entry(layer)
        from featurescope.core.analysis.receptive import ReceptiveField

        field = ReceptiveField(layer=layer, **{key: tuple(value) for key, value in entry["field"].items()})
        prep = self.preprocessing
        folder = self.folder if root is None else Path(root).expanduser().resolve()
        found = []
        for rank in range(k):
            file_id = int(data.ids[channel, rank])
            if file_id < 0:
                break
            y, x = (int(v) for v in data.positions[channel, rank])
            input_box = field.box(y, x)
            height, width = int(self.files["height"][file_id]), int(self.files["width"][file_id])
            found.append(Example(str(folder / str(self.files["path"][file_id])),
                                 float(data.values[channel, rank]), (y, x),
                                 prep.to_original(input_box, height, width), tuple(input_box), rank,
                                 int(self.files["size"][file_id]), int(self.files["mtime_ns"][file_id])))
        return found

    def channel_means(self, layer: str) -> np.ndarray:
        """Per channel, the mean over indexed images of its spatial maximum."""
        data = self._layer(layer)
        return data.sums / max(data.count, 1)

    def fired_fraction(self, layer: str) -> np.ndarray:
        """Per channel, the fraction of indexed images in which it was > 0 somewhere."""
        data = self._layer(layer)
        return data.positive / max(data.count, 1)

    def dead_channels(self, layer: str) -> list[int]:
        """Channels that never fired (> 0) on any indexed image."""
        data = self._layer(layer)
        if data.count == 0:
            return []
        return [int(c) for c in np.flatnonzero(data.positive == 0)]

    @property
    def groups(self) -> list[str]:
        """The sub-folders (classes, concepts) the index keeps sums for; [] when the folder
        does not have the ImageFolder layout (see :mod:`.groups`)."""
        return list(self.meta.get("groups", []))

    def group_means(self, layer: str) -> Optional[np.ndarray]:
        """(C, G) per channel and sub-folder, the mean over that sub-folder's indexed images
        of the channel's spatial maximum; None without sub-folder sums."""
        from featurescope.core.index.groups import group_ids

        data = self._layer(layer)
        if data.group_sums is None or not self.groups:
            return None
        ok = self.files["state"] == STATE_OK
        key = (len(ok), int(ok.sum()), tuple(self.groups))
        if getattr(self, "_group_counts", (None,))[0] != key:  # once per index, not per call
            member = group_ids(self.files["path"], self.groups)[ok]
            self._group_counts = (key, np.bincount(member[member >= 0], minlength=len(self.groups)))
        counts = self._group_counts[1].astype(np.float64)
        return data.group_sums / np.maximum(counts, 1.0)[None, :]

    def file_records(self) -> list[FileRecord]:
        return [FileRecord(str(p), int(s), int(m)) for p, s, m in
                zip(self.files["path"], self.files["size"], self.files["mtime_ns"])]

    # --- file ---------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the index to ``path`` atomically (replacing an older version)."""
        from featurescope.core.io.writers import write_npz

        for entry in self.meta["layers"]:
            if entry["name"] in self.topk:
                entry["count"] = int(self.topk[entry["name"]].count)
        self.meta["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        arrays = {"meta": np.array(json.dumps(self.meta))}
        for column, values in self.files.items():
            arrays[f"files/{column}"] = values
        for name, data in self.topk.items():
            for column in ("values", "ids", "positions", "sums", "positive"):
                arrays[f"layers/{name}/{column}"] = getattr(data, column)
            if data.group_sums is not None:
                arrays[f"layers/{name}/group_sums"] = data.group_sums
        written = write_npz(path, arrays, force=True)
        self.path = Path(path)
        return written


def empty_files() -> dict:
    return {"path": np.zeros(0, dtype="<U1"), "size": np.zeros(0, np.int64),
            "mtime_ns": np.zeros(0, np.int64), "height": np.zeros(0, np.int32),
            "width": np.zeros(0, np.int32), "state": np.zeros(0, np.int8)}


def open_index(path) -> Index:
    """Read an index file written by ``build_index`` / ``featurescope index``.

    Raises IndexFileError (a FeaturescopeError) for a missing file or one that is not an index.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise IndexFileError(f"{path} is a folder, not an index file; index it with "
                             f"`featurescope index {path} -o {path.name}.fsindex`.")
    if not path.is_file():
        raise IndexFileError(f"{path} does not exist; build it with `featurescope index FOLDER -o {path.name}`.")
    try:
        with open(path, "rb") as handle:
            start = handle.read(4)
    except OSError as error:
        raise IndexFileError(f"{path} cannot be read ({(error.strerror or str(error)).lower()}).") from None
    if start != b"PK\x03\x04":
        what = "it is empty" if not start else "it is not an NPZ file"
        raise IndexFileError(f"{path.name} is not a featurescope index ({what}).")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files") or "meta" not in data.files:
                raise ValueError("it has no description")
            meta = json.loads(str(data["meta"]))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError("it is not in the featurescope-index format")
            files = {key.split("/", 1)[1]: data[key] for key in data.files if key.startswith("files/")}
            arrays = {}
            for key in data.files:
                if key.startswith("layers/") and "/" in key[7:]:
                    name, column = key[7:].rsplit("/", 1)
                    arrays.setdefault(name, {})[column] = data[key]
    except Exception as error:  # zipfile.BadZipFile, EOFError, OSError, ValueError, ...
        raise IndexFileError(f"{path.name} cannot be read as a featurescope index "
                             f"({_damage(error)}); if it was one, delete it and build it again.") from None
    why = problem_of(meta, files, arrays)
    if why:
        raise IndexFileError(f"{path.name} is a damaged featurescope index ({why}); build it "
                             "again with `featurescope index FOLDER --rebuild`.")
    layers = {}
    for entry in meta["layers"]:
        data = arrays[entry["name"]]
        layers[entry["name"]] = LayerTopK(
            data["values"].astype(np.float32), data["ids"].astype(np.int64),
            data["positions"].astype(np.int32), data["sums"].astype(np.float64),
            data["positive"].astype(np.int64), int(entry.get("count", 0)), tuple(entry["shape"]),
            data["group_sums"].astype(np.float64) if "group_sums" in data else None)
    index = Index(meta, files, layers)
    index.path = path
    return index


def is_index_file(path) -> bool:
    """Whether ``path`` is a featurescope index, damaged or not (its description names the
    format): what ``--rebuild`` may replace. A photo, a truncated file or a foreign
    ``.npz`` is not."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return json.loads(str(data["meta"])).get("format") == FORMAT
    except Exception:  # anything unreadable is not (recognisably) an index
        return False


def _damage(error: Exception) -> str:
    """A few words for what reading an index file ran into."""
    text = str(error).rstrip(".")
    if isinstance(error, EOFError) or "not a zip file" in text.lower():
        return "it is truncated"
    if "crc" in text.lower():
        return "its contents are corrupted"
    if isinstance(error, json.JSONDecodeError):
        return "its description is not valid JSON"
    if isinstance(error, ValueError) and text.startswith("it "):
        return text
    return f"{type(error).__name__}: {text or 'unreadable'}"


def check_compatible(index: Index, model_record: dict, preprocessing: Preprocessing,
                     layers: list[str], k: int) -> Optional[str]:
    """None when a run with these settings can continue ``index``, else why not (a sentence)."""
    if index.model.get("name") != model_record.get("name") or \
            index.model.get("weights") != model_record.get("weights"):
        return (f"it was built with {index.model.get('display_name')}, not "
                f"{model_record.get('display_name')}")
    if index.preprocessing != preprocessing:
        return "it was built with other preprocessing"
    if index.layers != list(layers):
        return "it holds other layers"
    kept = int(index.meta.get("k_asked", index.k))
    if kept != int(k):
        return f"it keeps the top {kept}, not {k}"
    return None

