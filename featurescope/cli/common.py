"""What the ``featurescope`` subcommands share: defaults, exit codes, the progress bar on
stderr, warnings, loading the model the options name, choosing layers, refusing to
overwrite (core.io.writers.check_overwrite). Engine imports happen inside the functions (``--help`` stays instant).
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Optional

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class ProgressBar:
    """Progress on stderr: a bar redrawn in place on a terminal, nothing when piped."""

    def __init__(self, stream=None, prefix: str = ""):
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.prefix = prefix
        self.drawn = False
        self._last = 0.0

    def __call__(self, done: int, total: int, text: str = "") -> None:
        if not self.live:
            return
        now = time.monotonic()
        if total and done < total and now - self._last < 0.05:
            return
        self._last = now
        width = 24
        if total and total > 0:
            filled = int(width * min(done, total) / total)
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        else:
            bar = "[" + "." * width + "]"
        line = f"{self.prefix}{bar} {text}"
        columns = 100
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            pass
        self.stream.write("\r" + line[: max(10, columns - 1)].ljust(max(10, columns - 1)))
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def warn(text: str) -> None:
    """One ``featurescope: warning: ...`` line on stderr."""
    print(f"featurescope: warning: {text}", file=sys.stderr)


def plural(count: int, word: str) -> str:
    """``plural(1, "image")`` -> "1 image", ``plural(1280, "channel")`` -> "1,280 channels"."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def load_model_from_args(args, device: Optional[str] = None):
    """The LoadedModel that the model options of ``args`` name, with a progress bar."""
    from featurescope.core.models.load import load_model

    trust = bool(getattr(args, "trust_pickle", False))
    if trust:
        warn("--trust-pickle lets the weights file run any code while it is unpickled; "
             "use it only for files you trust.")
    bar = ProgressBar()
    try:
        with warnings.catch_warnings():
            if trust:  # said once above, in the command's own words
                warnings.filterwarnings("ignore", message=".*unpickl.*")
            return load_model(
                args.model, weights=args.weights, device=device or getattr(args, "device", "cpu"),
                progress=bar, input_size=getattr(args, "input_size", None),
                mean=getattr(args, "mean", None), std=getattr(args, "std", None),
                trust_pickle=trust,
            )
    finally:
        bar.finish()


def select_layers(model, spec: str) -> list[str]:
    """The layer names ``spec`` means: module names ("layer3", "relu#2") and the groups
    conv, pool, act, block and all, separated by commas (ModelError, with the closest
    name, for one the model does not have)."""
    from featurescope.core.capture.capture import layer_infos
    from featurescope.core.errors import ModelError

    chosen = [info.name for info in layer_infos(model, spec)]
    if not chosen:
        raise ModelError(f"{model.name} has no {spec.strip()} layers.")
    return chosen


def require_colormap(name: str) -> None:
    """ExportError unless ``name`` is one of core.grids.COLORMAPS."""
    from featurescope.core.render import grids
    from featurescope.core.errors import ExportError

    if name not in grids.COLORMAPS:
        raise ExportError(f"{name!r} is not a colormap featurescope has; choose one of "
                          f"{', '.join(grids.COLORMAPS)}.")
