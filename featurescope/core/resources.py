"""Find the bundled resources (sample photos, icons), from a clone or from a wheel."""
from __future__ import annotations

from pathlib import Path


def resource_path(*parts: str) -> Path:
    """Path of a bundled resource, e.g. ``resource_path("samples", "chelsea.png")``.

    In a wheel the top-level ``resources/`` folder is installed as the package
    ``featurescope.resources``; in a clone it sits beside ``featurescope/``.
    """
    try:
        import featurescope.resources as package

        base = Path(package.__file__).parent
    except ImportError:  # running from a clone that was never installed
        base = Path(__file__).resolve().parents[2] / "resources"
    return base.joinpath(*parts)


def sample_images() -> list[Path]:
    """The bundled sample photos, sorted by name."""
    from featurescope.core.io.images import is_image_file

    folder = resource_path("samples")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def default_sample() -> Path:
    """The photo the app opens on first start: the cat."""
    return resource_path("samples", "chelsea.png")
