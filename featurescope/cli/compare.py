"""``featurescope compare``: two images at one layer, as A, B and |A - B| grids on one
shared colour scale, and a JSON of their cosine similarity."""
from __future__ import annotations

import os
from pathlib import Path

from featurescope.cli.common import (
    load_model_from_args, refuse_existing, require_colormap, select_layers,
)


def run_compare(args) -> int:
    """Write <layer>_a.png, <layer>_b.png, <layer>_difference.png and <layer>_compare.json."""
    import numpy as np

    from featurescope.core.render import grids
    from featurescope.core.capture.capture import capture
    from featurescope.core.analysis.compare import compare_layer, shared_index_grids
    from featurescope.core.errors import ExportError
    from featurescope.core.io.export import annotate_grid, safe_filename, write_json, write_png
    from featurescope.core.io.images import load_image

    require_colormap(args.colormap)
    image_a, image_b = load_image(args.image_a), load_image(args.image_b)  # fail before the model
    model = load_model_from_args(args)
    layer = select_layers(model, args.layer)
    if len(layer) != 1:
        raise ExportError(f"compare takes one layer; {args.layer!r} names {len(layer)}.")
    layer = layer[0]
    out = Path(args.output)
    stem = safe_filename(layer)
    targets = {key: out / f"{stem}_{key}.png" for key in ("a", "b", "difference")}
    sidecar = out / f"{stem}_compare.json"
    if not args.force:
        refuse_existing((*targets.values(), sidecar))
    result_a = capture(model, image_a)
    result_b = capture(model, image_b)
    comparison = compare_layer(result_a, result_b, layer)
    pictures, layout = shared_index_grids(comparison)
    lut = grids.colormap_lut(args.colormap)
    titles = {"a": f"{layer}  A: {Path(args.image_a).name}", "b": f"{layer}  B: {Path(args.image_b).name}",
              "difference": f"{layer}  |A - B|"}
    written = []
    for key, target in targets.items():
        rgb = lut[pictures[key]]
        if args.upscale > 1:
            rgb = np.repeat(np.repeat(rgb, args.upscale, axis=0), args.upscale, axis=1)
        if args.annotate:
            rgb = annotate_grid(rgb, layout, titles[key], upscale=args.upscale)
        written.append(write_png(target, rgb, force=args.force))
    worst = comparison.most_different_channels()
    written.append(write_json(sidecar, {
        "image_a": str(args.image_a), "image_b": str(args.image_b), "model": model.name,
        "weights": model.weights_label, "layer": layer, "shape": list(comparison.a.shape),
        "colormap": args.colormap, "shared_levels": list(comparison.shared_levels),
        "similarity": comparison.similarity,
        "mean_abs_difference": comparison.mean_abs_difference,
        "channel_similarity": [float(v) for v in comparison.channel_similarity],
        "least_similar_channels": [int(c) for c in worst],
        "files": {key: path.name for key, path in targets.items()},
    }, force=args.force))
    print(f"{layer}: similarity {comparison.similarity:.4f}, mean |A - B| "
          f"{comparison.mean_abs_difference:.4g}; least similar channels "
          f"{', '.join(str(int(c)) for c in worst[:5])}")
    print(f"{Path(args.image_a).name} vs {Path(args.image_b).name} -> {out}{os.sep} ({len(written)} files)")
    return 0
