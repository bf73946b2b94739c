"""The laid-out graph as a picture file: SVG (text) or PNG (Pillow), no Qt.

Colours follow the kind of node, so the eye finds the convolutions, the joins and the
collapsed blocks; ``highlight`` (a node id) is drawn in the app's selection colour.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional
from xml.sax.saxutils import escape

from featurescope.core.graph.dataflow import Dataflow, GraphNode
from featurescope.core.graph.layout import GraphLayout, node_text

# (fill, border) by what a node is
COLOURS = {
    "conv": ("#dbe9f9", "#3b75c4"), "pool": ("#e3f3e1", "#4c9a45"), "act": ("#fdebd3", "#d08a2c"),
    "norm": ("#eee6f7", "#8462b0"), "block": ("#f2f2f2", "#666666"), "join": ("#ffffff", "#444444"),
    "io": ("#fafafa", "#999999"), "other": ("#ffffff", "#888888"),
}
HIGHLIGHT = ("#ffe066", "#d12b2b")


def node_style(node: GraphNode) -> str:
    """Which COLOURS entry ``node`` uses."""
    kind = node.kind
    if node.join:
        return "join"
    if node.is_block:
        return "block"
    if kind in ("input", "output"):
        return "io"
    if "Conv" in kind:
        return "conv"
    if "Pool" in kind:
        return "pool"
    if "Norm" in kind:
        return "norm"
    if kind in ("ReLU", "ReLU6", "SiLU", "GELU", "Hardswish", "Hardsigmoid", "LeakyReLU", "ELU",
                "Sigmoid", "Tanh", "Mish", "PReLU", "SELU", "Hardtanh", "Swish"):
        return "act"
    return "other"


def to_svg(graph: Dataflow, layout: GraphLayout, highlight: Optional[str] = None) -> str:
    """The picture as SVG text."""
    nodes = {n.id: n for n in graph.nodes}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{layout.width:.0f}" '
           f'height="{layout.height:.0f}" viewBox="0 0 {layout.width:.0f} {layout.height:.0f}" '
           'font-family="DejaVu Sans, Arial, sans-serif">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
           'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>',
           '<rect width="100%" height="100%" fill="white"/>']
    for _src, _dst, points in layout.edges:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="#777" stroke-width="1.2" '
                   'marker-end="url(#arrow)"/>')
    for node_id, box in layout.boxes.items():
        node = nodes[node_id]
        fill, border = HIGHLIGHT if node_id == highlight else COLOURS[node_style(node)]
        title, subtitle = node_text(node)
        if node.join:
            cx, cy = box.center
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{box.w / 2:.1f}" fill="{fill}" '
                       f'stroke="{border}" stroke-width="1.5"/>')
            out.append(f'<text x="{cx:.1f}" y="{cy + 4:.1f}" font-size="11" text-anchor="middle">'
                       f'{escape(title)}</text>')
            continue
        dash = ' stroke-dasharray="4,2"' if node.is_block else ""
        out.append(f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" '
                   f'rx="5" fill="{fill}" stroke="{border}" stroke-width="1.5"{dash}/>')
        cx = box.x + box.w / 2
        out.append(f'<text x="{cx:.1f}" y="{box.y + 15:.1f}" font-size="11" font-weight="bold" '
                   f'text-anchor="middle">{escape(title)}</text>')
        out.append(f'<text x="{cx:.1f}" y="{box.y + 30:.1f}" font-size="10" fill="#444" '
                   f'text-anchor="middle">{escape(subtitle)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def to_png(graph: Dataflow, layout: GraphLayout, highlight: Optional[str] = None, scale: float = 1.5):
    """The picture as a PIL image (drawn with Pillow's own font, ``scale`` x the layout)."""
    from PIL import Image, ImageDraw, ImageFont

    nodes = {n.id: n for n in graph.nodes}
    size = (max(1, int(layout.width * scale)), max(1, int(layout.height * scale)))
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    try:
        bold = ImageFont.load_default(size=11 * scale)
        small = ImageFont.load_default(size=10 * scale)
    except TypeError:  # Pillow < 10.1: one bitmap size
        bold = small = ImageFont.load_default()

    def s(value):
        return value * scale

    for _src, _dst, points in layout.edges:
        draw.line([(s(x), s(y)) for x, y in points], fill="#777777", width=max(1, int(scale)))
        x1, y1 = points[-1]
        draw.polygon([(s(x1), s(y1)), (s(x1) - s(3.5), s(y1) - s(6)), (s(x1) + s(3.5), s(y1) - s(6))],
                     fill="#777777")
    for node_id, box in layout.boxes.items():
        node = nodes[node_id]
        fill, border = HIGHLIGHT if node_id == highlight else COLOURS[node_style(node)]
        title, subtitle = node_text(node)
        rect = [s(box.x), s(box.y), s(box.x + box.w), s(box.y + box.h)]
        cx = s(box.x + box.w / 2)
        if node.join:
            draw.ellipse(rect, fill=fill, outline=border, width=max(1, int(scale)))
            draw.text((cx, s(box.y + box.h / 2)), title, fill="black", font=small, anchor="mm")
            continue
        draw.rounded_rectangle(rect, radius=s(5), fill=fill, outline=border, width=max(1, int(scale)))
        draw.text((cx, s(box.y + 12)), title, fill="black", font=bold, anchor="mm")
        draw.text((cx, s(box.y + 27)), subtitle, fill="#444444", font=small, anchor="mm")
    return image


def write_picture(graph: Dataflow, layout: GraphLayout, path, highlight: Optional[str] = None,
                  force: bool = False) -> Path:
    """Write the picture to ``path`` (.svg or .png, atomically; an existing file only
    with ``force``); returns the path. Raises ExportError as the other writers do."""
    from featurescope.core.io.writers import write_bytes

    path = Path(path)
    if path.suffix.lower() == ".svg":
        data = to_svg(graph, layout, highlight).encode("utf-8")
    else:
        import io

        buffer = io.BytesIO()
        to_png(graph, layout, highlight).save(buffer, format="PNG")
        data = buffer.getvalue()
    return write_bytes(path, data, force)
