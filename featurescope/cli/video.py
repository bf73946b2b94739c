"""``featurescope video``: a clip's frames beside one layer's view, rendered into a video file."""
from __future__ import annotations

import sys
from pathlib import Path

from featurescope.cli.common import ProgressBar, load_model_from_args, plural, select_layers, warn


def run_video(args) -> int:
    """Render INPUT's frames and the chosen view of --layer side by side into -o OUT."""
    from featurescope.core.errors import ExportError
    from featurescope.core.io.videos import VideoReader
    from featurescope.core.io.writers import refuse_existing
    from featurescope.core.live.render import parse_view, render_video

    parse_view(args.view)  # a wrong --view fails before the model loads
    VideoReader(args.input).close()  # so does an unreadable clip
    out = Path(args.output)
    refuse_existing([out], args.force)
    model = load_model_from_args(args)
    layer = select_layers(model, args.layer)
    if len(layer) != 1:
        raise ExportError(f"video takes one layer; {args.layer!r} names {len(layer)}.")
    if parse_view(args.view)[0] == "gradcam":
        from featurescope.core.analysis.gradcam import grad_cam_layer, layer_infos_for

        chosen, note = grad_cam_layer(layer_infos_for(model, layer[0]), layer[0], model.name)
        if note:
            warn(note)
        layer = [chosen]
    bar = ProgressBar(prefix=f"{Path(args.input).name} ")
    try:
        summary = render_video(model, args.input, out, layer[0], args.view, fps=args.fps,
                               max_frames=args.max_frames, force=args.force, progress=bar)
    except KeyboardInterrupt:
        bar.finish()
        print(f"featurescope: stopped; {out} was not written (a video is only kept when complete).",
              file=sys.stderr)
        raise
    finally:
        bar.finish()
    if summary.problem:
        warn(f"{summary.problem} The video holds the {plural(summary.frames, 'frame')} before that.")
    print(f"{Path(args.input).name}: {plural(summary.frames, 'frame')}, {layer[0]} ({args.view}) -> {summary.path}",
          file=sys.stdout)
    return 0
