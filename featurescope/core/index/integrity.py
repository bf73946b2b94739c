"""Checking an index file's contents before anything trusts them.

An index is a plain ``.npz`` anyone can edit or truncate, so :func:`open_index` reads it
whole and checks every field its queries and a resumed build use: the JSON's keys and
types, that the file table's columns have one row per file, that each layer's arrays
have its channels and K, and that every stored file id and position points inside the
table and the map. :func:`problem_of` returns what is wrong in a few words (or None);
the caller turns it into one sentence naming the file.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

FILE_COLUMNS = ("path", "size", "mtime_ns", "height", "width", "state")
LAYER_COLUMNS = ("values", "ids", "positions", "sums", "positive")
FIELD_KEYS = ("size_hw", "jump_hw", "start_hw", "input_size", "output_shape")


def _meta_problem(meta) -> Optional[str]:
    if not isinstance(meta, dict):
        return "its description is not a JSON object"
    for key, kind in (("k", int), ("folder", str), ("model", dict), ("preprocessing", dict),
                      ("layers", list)):
        if key not in meta:
            return f"its description has no {key!r}"
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            return f"its {key!r} is not a {kind.__name__}"
    if meta["k"] < 1:
        return f"it keeps the top {meta['k']}, which is fewer than 1"
    asked = meta.get("k_asked", meta["k"])
    if not isinstance(asked, int) or isinstance(asked, bool) or asked < meta["k"]:
        return "its asked-for top is not a whole number at least K"
    if not isinstance(meta.get("skipped", []), list):
        return "its list of skipped files is not a list"
    from featurescope.core.index.geometry import Preprocessing

    try:
        prep = Preprocessing.from_dict(meta["preprocessing"])
    except (KeyError, TypeError, ValueError):
        return "its preprocessing is incomplete"
    if len(prep.crop) != 2 or min(prep.crop) < 1 or prep.resize < 1:
        return "its preprocessing has an impossible size"
    names = []
    for entry in meta["layers"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return "a layer has no name"
        field = entry.get("field")
        if not isinstance(field, dict) or any(key not in field for key in FIELD_KEYS):
            return f"layer {entry['name']!r} has no receptive field"
        shape = entry.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
            return f"layer {entry['name']!r} has no map size"
        if not isinstance(entry.get("channels"), int) or entry["channels"] < 1:
            return f"layer {entry['name']!r} has no channel count"
        if not isinstance(entry.get("count", 0), int) or entry.get("count", 0) < 0:
            return f"layer {entry['name']!r} has an impossible image count"
        names.append(entry["name"])
    if len(set(names)) != len(names):
        return "it lists a layer twice"
    return None


def _files_problem(files: dict) -> Optional[str]:
    missing = [column for column in FILE_COLUMNS if column not in files]
    if missing:
        return f"its file table has no {missing[0]!r} column"
    rows = {len(files[column]) for column in FILE_COLUMNS}
    if len(rows) != 1 or any(files[column].ndim != 1 for column in FILE_COLUMNS):
        return "the columns of its file table have different lengths"
    if files["path"].dtype.kind != "U" or any(files[c].dtype.kind not in "iu" for c in FILE_COLUMNS[1:]):
        return "its file table holds the wrong kind of values"
    if len(files["state"]) and not np.isin(files["state"], (0, 1, 2)).all():
        return "its file table has an unknown file state"
    return None


def _layer_problem(entry: dict, data: dict, k: int, n_files: int, groups: int = 0) -> Optional[str]:
    name, channels = entry["name"], entry["channels"]
    expected = {"values": (channels, k), "ids": (channels, k), "positions": (channels, k, 2),
                "sums": (channels,), "positive": (channels,)}
    for column, shape in expected.items():
        if column not in data:
            return f"layer {name!r} has no {column!r}"
        if tuple(data[column].shape) != shape:
            return f"layer {name!r}'s {column!r} has shape {tuple(data[column].shape)}, not {shape}"
    if "group_sums" in data and tuple(data["group_sums"].shape) != (channels, groups):
        return f"layer {name!r}'s sub-folder sums do not match its {groups} sub-folders"
    if data["ids"].dtype.kind not in "iu" or data["positions"].dtype.kind not in "iu":
        return f"layer {name!r} holds the wrong kind of values"
    ids = data["ids"]
    if ids.size and (ids.min() < -1 or ids.max() >= n_files):
        return f"layer {name!r} points at files the index does not list"
    used = ids >= 0
    if used.any():
        height, width = entry["shape"]
        y, x = data["positions"][..., 0][used], data["positions"][..., 1][used]
        if y.min() < 0 or x.min() < 0 or y.max() >= height or x.max() >= width:
            return f"layer {name!r} has positions outside its {height}x{width} map"
        if not np.isfinite(data["values"][used]).all():
            return f"layer {name!r} has values that are not numbers"
    return None


def problem_of(meta, files: dict, layers: dict[str, dict]) -> Optional[str]:
    """What is wrong with an index's parts (``layers``: name -> {column: array}), or None."""
    why = _meta_problem(meta) or _files_problem(files)
    for entry in ([] if why else meta["layers"]):
        why = _layer_problem(entry, layers.get(entry["name"], {}), meta["k"], len(files["path"]),
                             len(meta.get("groups") or []))
        if why:
            break
    return why
