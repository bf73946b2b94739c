"""Write a Grad-CAM: the map over the picture the model saw (PNG) and a JSON sidecar.

Used by ``featurescope export --gradcam`` and the app's *Export Grad-CAM...*: both
files are planned first, refused when either exists without ``force``, and written
atomically; the sidecar starts with the provenance block.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from featurescope.core.io.provenance import provenance
from featurescope.core.io.writers import (PathLike, refuse_existing, safe_filename, write_all, write_json,
                                          write_png)

GRADCAM_COLORMAP = "inferno"
GRADCAM_ALPHA = 0.5


def gradcam_targets(folder: PathLike, layer: str) -> list[Path]:
    """``gradcam_<layer>.png`` and ``gradcam_<layer>.json`` in ``folder``."""
    stem = f"gradcam_{safe_filename(layer)}"
    return [Path(folder) / f"{stem}.png", Path(folder) / f"{stem}.json"]


def export_grad_cam(model, result, path: PathLike, layer: Optional[str] = None,
                    target: Optional[int] = None, cam=None, colormap: str = GRADCAM_COLORMAP,
                    alpha: float = GRADCAM_ALPHA, source_path: Optional[PathLike] = None,
                    force: bool = False) -> list[Path]:
    """Write the Grad-CAM of ``result``'s image as ``path`` (PNG) and ``path`` with
    ``.json`` (class, score, layer, sizes, after the provenance block).

    ``cam``: a :class:`~featurescope.core.analysis.gradcam.GradCam` already computed (the
    app's view); without it, it is computed for the layer
    :func:`~featurescope.core.analysis.gradcam.grad_cam_layer` picks for ``layer``
    (default: the last convolution) and class ``target`` (default: the top class). The picture is
    ``overlay(model.deprocess(result.input), cam.map, colormap, alpha)``. Neither file is
    written when either exists and ``force`` is False. Returns both paths.
    """
    from featurescope.core.analysis.gradcam import compute_grad_cam, grad_cam_layer, layer_infos_for, overlay

    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    refuse_existing((path, sidecar_path), force)
    if cam is None:
        layer, _note = grad_cam_layer(layer_infos_for(model, layer), layer, model.name)
        cam = compute_grad_cam(model, result.input, layer, target)
    picture = overlay(model.deprocess(result.input), cam.map, colormap=colormap, alpha=alpha)
    sidecar = provenance(model, source_path, {"colormap": colormap, "alpha": float(alpha)})
    sidecar.update({
        "png": path.name,
        "layer": cam.layer,
        "method": cam.method,
        "class_index": int(cam.target),
        "class_label": cam.label,
        "score": float(cam.score),
        "input_size": list(cam.map.shape),
        "layer_map_size": list(cam.layer_map.shape),
    })
    if cam.box is not None:  # a detector's: the box, by its rank (target), not a class index
        sidecar.pop("class_index")
        sidecar.update({"task": cam.task, "box_number": int(cam.target),
                        "box": [round(float(v), 2) for v in cam.box]})
    return write_all([lambda: write_png(path, picture, force=force),
                      lambda: write_json(sidecar_path, sidecar, force=force)])
