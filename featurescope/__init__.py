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
    "load_model": "featurescope.core.models.load",
    "catalogue": "featurescope.core.models.load",
    "LoadedModel": "featurescope.core.models.load",
    "ModelSpec": "featurescope.core.models.spec",
    "Preprocessing": "featurescope.core.models.spec",
    "parse_statistics": "featurescope.core.models.spec",
    "register_source": "featurescope.core.models.registry",
    "load_image": "featurescope.core.io.images",
    "capture": "featurescope.core.capture.capture",
    "capture_batch": "featurescope.core.capture.capture",
    "CaptureResult": "featurescope.core.capture.result",
    "BatchResult": "featurescope.core.capture.result",
    "LayerInfo": "featurescope.core.capture.layers",
    "feature_grid": "featurescope.core.render.grids",
    "filter_grid": "featurescope.core.render.filters",
    "colormap_lut": "featurescope.core.render.grids",
    "COLORMAPS": "featurescope.core.render.grids",
    "receptive_field": "featurescope.core.analysis.receptive",
    "receptive_fields": "featurescope.core.analysis.receptive",
    "rank_channels": "featurescope.core.analysis.stats",
    "dead_channels": "featurescope.core.analysis.stats",
    "activation_histogram": "featurescope.core.analysis.stats",
    "grad_cam": "featurescope.core.analysis.gradcam",
    "compute_grad_cam": "featurescope.core.analysis.gradcam",
    "compare_layer": "featurescope.core.analysis.compare",
    "explain_layer": "featurescope.core.analysis.explain",
    "explain_position": "featurescope.core.analysis.arithmetic",
    "ablate": "featurescope.core.analysis.ablate",
    "attribute": "featurescope.core.analysis.attribution",
    "Attribution": "featurescope.core.analysis.attribution",
    "faithfulness": "featurescope.core.analysis.faithfulness",
    "CAM_METHODS": "featurescope.core.analysis.cam_methods",
    "guided_backprop": "featurescope.core.analysis.guided",
    "GuidedBackprop": "featurescope.core.analysis.guided",
    "Faithfulness": "featurescope.core.analysis.faithfulness",
    "overview_tiles": "featurescope.core.analysis.overview",
    "overview_poster": "featurescope.core.analysis.overview",
    "apply_kernel": "featurescope.core.analysis.playground",
    "similar_filters": "featurescope.core.analysis.playground",
    "export_layers": "featurescope.core.io.export",
    "build_index": "featurescope.core.index.build",
    "open_index": "featurescope.core.index.store",
    "Index": "featurescope.core.index.store",
    "Example": "featurescope.core.index.store",
    "visualize": "featurescope.core.optvis.render",
    "Visualization": "featurescope.core.optvis.render",
    "OptvisCache": "featurescope.core.optvis.cache",
    "circuit": "featurescope.core.circuits.circuit",
    "Circuit": "featurescope.core.circuits.circuit",
    "expanded_weights": "featurescope.core.circuits.expanded",
    "contribution_matrix": "featurescope.core.circuits.contributions",
    "available_devices": "featurescope.core.models.devices",
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
