"""``featurescope compare``: two images at one layer, as A, B and |A - B| grids on one
shared colour scale, and a JSON of their cosine similarity."""
from __future__ import annotations

import os
from pathlib import Path

from featurescope.cli.common import load_model_from_args, plural, require_colormap, select_layers


def run_compare(args) -> int:
    """Write <layer>_a.png, <layer>_b.png, <layer>_difference.png and <layer>_compare.json."""
    from featurescope.core.analysis.compare import compare_layer
    from featurescope.core.capture.capture import capture
    from featurescope.core.errors import ExportError
    from featurescope.core.io.compare_export import comparison_targets, export_comparison
    from featurescope.core.io.images import load_image
    from featurescope.core.io.writers import refuse_existing

    require_colormap(args.colormap)
    image_a, image_b = load_image(args.image_a), load_image(args.image_b)  # fail before the model
    model = load_model_from_args(args)
    layer = select_layers(model, args.layer)
    if len(layer) != 1:
        raise ExportError(f"compare takes one layer; {args.layer!r} names {len(layer)}.")
    layer = layer[0]
    out = Path(args.output)
    refuse_existing(comparison_targets(out, layer), args.force)
    comparison = compare_layer(capture(model, image_a), capture(model, image_b), layer)
    written = export_comparison(comparison, out, model=model, source_a=args.image_a,
                                source_b=args.image_b, colormap=args.colormap,
                                upscale=args.upscale, annotate=args.annotate, force=args.force)
    worst = comparison.most_different_channels()
    print(f"{layer}: similarity {comparison.similarity:.4f}, mean |A - B| "
          f"{comparison.mean_abs_difference:.4g}; least similar channels "
          f"{', '.join(str(int(c)) for c in worst[:5])}")
    print(f"{Path(args.image_a).name} vs {Path(args.image_b).name} -> {out}{os.sep} ({plural(len(written), 'file')})")
    return 0
