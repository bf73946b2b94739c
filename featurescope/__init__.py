"""featurescope: see what a convolutional network sees.

The public Python API. Importing this package imports neither Qt nor torch; the
functions below pull in the engine (torch, torchvision) on first use, so
``featurescope --version`` and ``--help`` stay instant.

    >>> import featurescope as fs
    >>> model = fs.load_model("efficientnet_lite0")
    >>> result = fs.capture(model, fs.load_image("cat.jpg"))
    >>> rgb = fs.feature_grid(result[model.layers[0]], colormap="magma")
"""
from __future__ import annotations

__version__ = "0.1.0"

# Public name -> engine module that defines it. Resolved lazily (PEP 562) so that
# importing featurescope stays cheap.
_API = {
    "load_model": "featurescope.core.models",
    "catalogue": "featurescope.core.models",
    "LoadedModel": "featurescope.core.models",
    "load_image": "featurescope.core.images",
    "capture": "featurescope.core.capture",
    "CaptureResult": "featurescope.core.capture",
    "LayerInfo": "featurescope.core.capture",
    "feature_grid": "featurescope.core.grids",
    "filter_grid": "featurescope.core.filters",
    "colormap_lut": "featurescope.core.grids",
    "COLORMAPS": "featurescope.core.grids",
    "receptive_field": "featurescope.core.receptive",
    "receptive_fields": "featurescope.core.receptive",
    "rank_channels": "featurescope.core.stats",
    "dead_channels": "featurescope.core.stats",
    "activation_histogram": "featurescope.core.stats",
    "grad_cam": "featurescope.core.gradcam",
    "compute_grad_cam": "featurescope.core.gradcam",
    "compare_layer": "featurescope.core.compare",
    "explain_layer": "featurescope.core.explain",
    "export_layers": "featurescope.core.export",
    "available_devices": "featurescope.core.devices",
    "CancelToken": "featurescope.core.progress",
    "Cancelled": "featurescope.core.progress",
    "FeaturescopeError": "featurescope.core.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    module_name = _API.get(name)
    if module_name is None:
        raise AttributeError(f"module 'featurescope' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
