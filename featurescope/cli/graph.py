"""``featurescope graph -o net.svg``: the network's dataflow as a picture (SVG or PNG)."""
from __future__ import annotations

from pathlib import Path

from featurescope.cli.arguments import add_model_options
from featurescope.cli.common import load_model_from_args


def add_graph_parser(commands) -> None:
    graph = commands.add_parser(
        "graph", help="draw the network's dataflow as SVG or PNG",
        description="Draw the network as a graph: modules as nodes with their output shapes, "
                    "residual additions and concatenations as joins, blocks collapsed until "
                    "expanded. Traced with torch.fx (the op trace of a forward pass where fx "
                    "cannot follow the network).")
    add_model_options(graph, weights_default=None, device=False)
    graph.add_argument("--output", "-o", required=True, metavar="OUT",
                       help="the picture to write: a .svg or .png file")
    graph.add_argument("--expand", metavar="auto|all|none|PATH[,PATH...]", default="auto",
                       help="which blocks to draw open: auto (as many as fit about 40 nodes), "
                            "all, none, or module paths such as layer1,layer1.0")
    graph.add_argument("--highlight", metavar="LAYER", help="a layer to mark (and open the blocks around)")
    graph.add_argument("--json", action="store_true", help="also print the graph's nodes as JSON")
    graph.add_argument("--force", "-f", action="store_true", help="overwrite an existing file")


def run_graph(args) -> int:
    """Trace, lay out and write the graph; print where it went."""
    from featurescope.core.errors import ExportError, ModelError
    from featurescope.core.io.writers import refuse_existing
    from featurescope.core.graph.dataflow import auto_expanded, block_of, collapse, expand_path
    from featurescope.core.graph.tracing import build_dataflow
    from featurescope.core.graph.draw import write_picture
    from featurescope.core.graph.layout import layout_graph

    out = Path(args.output)
    if out.suffix.lower() not in (".svg", ".png"):
        raise ExportError(f"{out.name} is neither .svg nor .png; name the picture net.svg or net.png.")
    refuse_existing([out], args.force)
    if args.weights is None:  # the graph does not depend on the weights: no download
        args.weights = "none"
    model = load_model_from_args(args, device="cpu")
    graph = build_dataflow(model)
    spec = (args.expand or "auto").strip()
    if spec.lower() == "auto":
        expanded = auto_expanded(graph)
    elif spec.lower() == "all":
        expanded = set(graph.blocks)
    elif spec.lower() == "none":
        expanded = set()
    else:
        expanded = {part.strip() for part in spec.split(",") if part.strip()}
        unknown = sorted(expanded - set(graph.blocks))
        if unknown:
            known = ", ".join(list(graph.blocks)[:6])
            raise ModelError(f"{unknown[0]!r} is not a block of {model.name}; its blocks start with "
                             f"{known} (`featurescope layers --all` lists the modules).")
    highlight = None
    if args.highlight:
        if args.highlight not in graph.layer_nodes() and args.highlight not in graph.blocks:
            raise ModelError(f"{args.highlight!r} is not a layer of {model.name}'s graph; "
                             "`featurescope layers --all` lists them.")
        expanded = expand_path(graph, args.highlight, expanded)
    shown = collapse(graph, expanded)
    if args.highlight:
        highlight = block_of(shown, args.highlight)
    layout = layout_graph(shown)
    write_picture(shown, layout, out, highlight=highlight, force=args.force)
    if args.json:
        import json

        print(json.dumps({"model": model.name, "source": graph.source, "nodes": [
            {"id": n.id, "label": n.label, "kind": n.kind, "layer": n.layer,
             "shape": list(n.shape) if n.shape else None, "inputs": n.inputs, "join": n.join,
             "members": n.members} for n in shown.nodes]}, indent=2))
    else:
        print(f"{out}: {model.name}, {len(shown.nodes)} nodes ({len(graph.nodes)} when fully open), "
              f"traced with {'torch.fx' if graph.source == 'fx' else 'the op trace'}")
    return 0
