"""Every view of the main window, in order, grouped by what the user is doing.

A new view is one file under ``gui/views/`` and one entry in :data:`VIEWS`. The order is the
order of the view bar, of the View menu and of Ctrl+1 ... Ctrl+9; the group is the heading
the view's button sits under. ``name`` is the view's short name: the window keeps the view
as ``window.<name>_view`` and ``featurescope screenshot --view NAME`` shows it.

The view classes are named, not imported ("module.Class" under gui/views), so the command
line can list the views without importing Qt. A view is built as ``Class(state, jobs=jobs)``
when its constructor takes ``jobs``, else ``Class(state)``.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

EXPLORE = "Explore a layer"
EXPLAIN = "Explain a decision"
DATASET = "A dataset"
LEARN = "Learn the arithmetic"
VISUALISE = "Visualise"


@dataclass(frozen=True)
class ViewEntry:
    """One view: its short name, the button's title, its group, its class, a tooltip."""

    name: str
    title: str
    group: str
    widget: str  # "module.Class" under featurescope.gui.views
    tip: str = ""

    def build(self, state: Any, jobs: Any) -> Any:
        module, _, cls_name = self.widget.rpartition(".")
        cls = getattr(importlib.import_module(f"featurescope.gui.views.{module}"), cls_name)
        if "jobs" in inspect.signature(cls).parameters:
            return cls(state, jobs=jobs)
        return cls(state)


VIEWS: tuple[ViewEntry, ...] = (
    ViewEntry("grid", "Feature maps", EXPLORE, "grid_view.FeatureGridView",
              "Every channel of the layer at once"),
    ViewEntry("filters", "Filters", EXPLORE, "filters_view.FiltersView",
              "The layer's weights: what each channel looks for"),
    ViewEntry("channel", "Channel", EXPLORE, "channel_view.ChannelView",
              "One channel over the photo, where it looks, its arithmetic"),
    ViewEntry("graph", "Graph", EXPLORE, "graph_view.GraphView",
              "The network as a graph of modules; click one to select it"),
    ViewEntry("gradcam", "Grad-CAM", EXPLAIN, "gradcam_view.GradCamView",
              "Which parts of the photo decided a class"),
    ViewEntry("compare", "Compare", EXPLAIN, "compare_view.CompareView",
              "Two photos side by side through the same layer"),
    ViewEntry("ablation", "Switch off", EXPLAIN, "ablation_view.AblationView",
              "Switch channels off and see what the prediction loses"),
    ViewEntry("why", "Why", EXPLAIN, "why_view.WhyView",
              "Which channels carried the class, checked by switching them off"),
    ViewEntry("circuits", "Circuits", EXPLAIN, "circuits_view.CircuitsView",
              "Which channels of an earlier layer build this channel; walk back to the first layer"),
    ViewEntry("examples", "Examples", DATASET, "examples_view.ExamplesView",
              "The photos of a folder that excite a channel most"),
    ViewEntry("playground", "Playground", LEARN, "playground_view.PlaygroundView",
              "Draw a kernel; watch the convolution and the pooling"),
    ViewEntry("visualize", "Visualise", VISUALISE, "visualize_view.VisualizeView",
              "What a channel would most like to see; the atlas; the hierarchy"),
)


def view_names() -> list[str]:
    return [entry.name for entry in VIEWS]


def view_index(name: str) -> int:
    """The position of the view called ``name`` in :data:`VIEWS` (ValueError if none)."""
    for index, entry in enumerate(VIEWS):
        if entry.name == name:
            return index
    raise ValueError(f"There is no view called {name!r}.")
