"""The JSON sidecar of an export: what was exported, from what, and how.

It names the model and its weights, the source image with its SHA-256, the input the
model saw, the grid options and, per layer, its shape, metadata, channel order and files,
so that an export can be understood (and redone) without featurescope open.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path
from typing import Any, Optional

from featurescope.core.io.writers import file_sha256


def layer_record(name: str, info, chw, position_to_channel, files, out_dir: Path) -> dict:
    """One layer's entry: shape, its LayerInfo (when captured), channel order, files."""
    record: dict[str, Any] = {"name": name, "shape": list(chw.shape)}
    if info is not None:
        fields = dataclasses.asdict(info)  # LayerInfo, every field but its name
        del fields["name"]
        fields["module"] = fields.pop("module_name")
        if fields["output_size"] is None:  # only adaptive pools have one
            del fields["output_size"]
        record.update(fields)
    record["channel_order"] = [int(c) for c in position_to_channel]
    record["files"] = [_relative(path, out_dir) for path in files]
    return record


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def sidecar(result, model, layer_records, normalize, colormap, order, upscale, annotate,
            filters_upscale: Optional[int], source_path, npz_path, out_dir: Path) -> dict:
    """The sidecar's contents; ``filters_upscale`` is None when no filters were exported."""
    from featurescope import __version__

    model_block: dict[str, Any] = {"name": getattr(result, "model_name", None)}
    if model is not None:
        model_block = {
            "name": model.name,
            "display_name": getattr(model, "display_name", model.name),
            "weights": getattr(model, "weights_label", None),
            "trained": getattr(model, "trained", None),
            "device": str(getattr(model, "device", "")) or None,
        }
    source = None
    if source_path is not None:
        source_path = Path(source_path)
        source = {"path": str(source_path.resolve()), "name": source_path.name}
        try:
            source["sha256"] = file_sha256(source_path)
        except OSError:
            source["sha256"] = None
    input_tensor = getattr(result, "input", None)
    sidecar: dict[str, Any] = {
        "featurescope_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model_block,
        "source_image": source,
        "input": {
            "shape": list(input_tensor.shape) if input_tensor is not None else None,
            "size": list(model.input_size) if model is not None else None,
            "mean": list(model.mean) if model is not None else None,
            "std": list(model.std) if model is not None else None,
            "npz_key": "input" if npz_path is not None else None,
        },
        "grid": {
            "normalize": normalize,
            "colormap": colormap,
            "channel_order": order,
            "upscale": upscale,
            "annotated": bool(annotate),
            "filters": filters_upscale is not None,
            "filters_upscale": filters_upscale,
        },
        "npz": _relative(npz_path, out_dir) if npz_path is not None else None,
        "layers": layer_records,
    }
    predictions = None
    if getattr(result, "logits", None) is not None and hasattr(result, "predictions"):
        try:
            predictions = [
                {"label": p.label, "index": int(p.index), "probability": float(p.probability)}
                for p in result.predictions(top=5)
            ]
        except Exception:  # predictions are a courtesy in the sidecar, never a reason to fail
            predictions = None
    sidecar["predictions"] = predictions
    return sidecar
