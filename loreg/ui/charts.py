"""Server-rendered inline SVG: the lineage graph and the per-module delta-norm heatmap.

Pure functions from plain data to SVG markup (everything user-supplied is escaped), so the
pages need no JavaScript and the pictures can be tested as text. Each picture carries a
``<title>``/``aria-label``; the pages also render the same data as a table or list.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

# ---------------------------------------------------------------------------- lineage

DASH = "\N{EN DASH}"  # shown for an empty value


@dataclass(frozen=True)
class Node:
    label: str  # "ns/name@3"
    href: str | None
    note: str = ""  # "w=0.7 · ties" on the edge to/from this node


NODE_W = 220
NODE_H = 34
ROW_GAP = 18
COL_GAP = 150
PAD = 12


def _node(x: float, y: float, node: Node, *, current: bool = False) -> str:
    label = node.label if len(node.label) <= 30 else node.label[:29] + "…"
    cls = "lg-node lg-current" if current else "lg-node"
    body = (
        f'<rect class="{cls}" x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" '
        f'rx="6"/><text class="lg-label" x="{x + NODE_W / 2:.0f}" y="{y + NODE_H / 2 + 5:.0f}" '
        f'text-anchor="middle">{escape(label)}</text>'
    )
    if node.href and not current:
        return f'<a href="{escape(node.href)}"><title>{escape(node.label)}</title>{body}</a>'
    return f"<g><title>{escape(node.label)}</title>{body}</g>"


def _column(count: int, height: float) -> list[float]:
    used = count * NODE_H + max(0, count - 1) * ROW_GAP
    top = (height - used) / 2
    return [top + i * (NODE_H + ROW_GAP) for i in range(count)]


def lineage_svg(parents: Sequence[Node], current: Node, children: Sequence[Node]) -> Markup:
    """Parents (left) -> this version (middle) -> children (right), edges labelled."""
    rows = max(1, len(parents), len(children))
    height = PAD * 2 + rows * NODE_H + (rows - 1) * ROW_GAP
    cols = [c for c, n in ((0, parents), (1, [current]), (2, children)) if n]
    x_of = {c: PAD + i * (NODE_W + COL_GAP) for i, c in enumerate(cols)}
    width = PAD * 2 + len(cols) * NODE_W + (len(cols) - 1) * COL_GAP
    mid_y = _column(1, height)[0]
    parts: list[str] = []
    summary = f"Lineage of {current.label}: {len(parents)} parent(s), {len(children)} child(ren)"
    parts.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" role="img" '
        f'aria-label="{escape(summary)}" viewBox="0 0 {width} {height:.0f}" '
        f'width="{width}" height="{height:.0f}">'
        f"<title>{escape(summary)}</title>"
        '<defs><marker id="lg-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" class="lg-arrowhead"/></marker></defs>'
    )

    def edge(x1: float, y1: float, x2: float, y2: float, note: str, *, at_start: bool) -> None:
        mx = (x1 + x2) / 2
        parts.append(
            f'<path class="lg-edge" d="M{x1:.0f},{y1:.0f} C{mx:.0f},{y1:.0f} {mx:.0f},{y2:.0f} '
            f'{x2:.0f},{y2:.0f}" marker-end="url(#lg-arrow)"/>'
        )
        if note:  # beside the other node's end, where edges do not crowd
            x, y, anchor = (x1 + 6, y1 - 6, "start") if at_start else (x2 - 10, y2 - 6, "end")
            parts.append(
                f'<text class="lg-note" x="{x:.0f}" y="{y:.0f}" '
                f'text-anchor="{anchor}">{escape(note)}</text>'
            )

    cy = mid_y + NODE_H / 2
    cx = x_of[1]
    if parents:
        for y, p in zip(_column(len(parents), height), parents, strict=True):
            edge(x_of[0] + NODE_W, y + NODE_H / 2, cx, cy, p.note, at_start=True)
    if children:
        for y, c in zip(_column(len(children), height), children, strict=True):
            edge(cx + NODE_W, cy, x_of[2], y + NODE_H / 2, c.note, at_start=False)
    if parents:
        for y, p in zip(_column(len(parents), height), parents, strict=True):
            parts.append(_node(x_of[0], y, p))
    parts.append(_node(cx, mid_y, current, current=True))
    if children:
        for y, c in zip(_column(len(children), height), children, strict=True):
            parts.append(_node(x_of[2], y, c))
    parts.append("</svg>")
    return Markup("".join(parts))


# ---------------------------------------------------------------------------- heatmap

_LAYER_PARENTS = {"layers", "layer", "h", "blocks", "block"}

#: A sequential blue scale (ColorBrewer "Blues"), light = small, dark = large.
_SCALE = [
    "#f7fbff",
    "#deebf7",
    "#c6dbef",
    "#9ecae1",
    "#6baed6",
    "#4292c6",
    "#2171b5",
    "#08519c",
    "#08306b",
]


def split_module(name: str) -> tuple[int | None, str]:
    """``model.layers.3.self_attn.q_proj`` -> ``(3, "self_attn.q_proj")``; no layer -> None."""
    parts = name.split(".")
    for i in range(len(parts) - 1):
        if parts[i + 1].isdigit() and (parts[i] in _LAYER_PARENTS or i + 2 < len(parts)):
            rest = ".".join(parts[i + 2 :]) or parts[i]
            return int(parts[i + 1]), rest
    return None, name


def _hex(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def color_for(t: float) -> str:
    """Colour of a value scaled into 0..1 (interpolated between the scale's stops)."""
    t = min(1.0, max(0.0, t))
    pos = t * (len(_SCALE) - 1)
    i = min(int(pos), len(_SCALE) - 2)
    f = pos - i
    a, b = _hex(_SCALE[i]), _hex(_SCALE[i + 1])
    r, g, bl = (round(x + (y - x) * f) for x, y in zip(a, b, strict=True))
    return f"#{r:02x}{g:02x}{bl:02x}"


@dataclass(frozen=True)
class Cell:
    module: str  # full module name
    layer: int | None
    kind: str  # module type ("self_attn.q_proj")
    norm: float | None  # None: not finite / missing


@dataclass(frozen=True)
class NormGrid:
    kinds: list[str]
    layers: list[int | None]
    cells: dict[tuple[str, int | None], Cell]
    low: float
    high: float

    @property
    def rows(self) -> list[Cell]:
        """Every cell, in layer then module-type order (for the fallback table)."""

        def key(c: Cell) -> tuple[int, tuple[int, str]]:
            return (c.layer if c.layer is not None else -1, _kind_order(c.kind))

        return sorted(self.cells.values(), key=key)


def norm_grid(modules: Mapping[str, Any]) -> NormGrid | None:
    """Module type x layer grid of ``delta_norm`` from a validation report's ``modules``."""
    cells: dict[tuple[str, int | None], Cell] = {}
    for name, stats in modules.items():
        if not isinstance(name, str) or not isinstance(stats, Mapping):
            continue
        raw = stats.get("delta_norm")
        value = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
        if value is not None and not math.isfinite(value):
            value = None
        layer, kind = split_module(name)
        cells[(kind, layer)] = Cell(name, layer, kind, value)
    if not cells:
        return None
    kinds = sorted({k for k, _ in cells}, key=_kind_order)
    layers = sorted({la for _, la in cells}, key=lambda x: -1 if x is None else x)
    values = [c.norm for c in cells.values() if c.norm is not None]
    return NormGrid(kinds, layers, cells, min(values, default=0.0), max(values, default=0.0))


def log_position(value: float, low: float, high: float) -> float:
    """Where ``value`` sits in 0..1 on a log scale from ``low`` to ``high`` (both > 0).

    Delta norms span orders of magnitude (an MLP projection can change the base 100 times
    more than a k_proj); on a linear scale every small module would get the same pale
    colour. Zero (or negative) norms sit at 0."""
    if value <= 0 or low <= 0:
        return 0.0
    if high <= low:
        return 0.5
    return min(1.0, max(0.0, math.log(value / low) / math.log(high / low)))


def positive_low(grid: NormGrid) -> float:
    """The smallest norm above zero: the bottom of the log scale."""
    return min(
        (c.norm for c in grid.cells.values() if c.norm is not None and c.norm > 0), default=0.0
    )


_KIND_ORDER = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _kind_order(kind: str) -> tuple[int, str]:
    last = kind.rsplit(".", 1)[-1]
    return (_KIND_ORDER.index(last) if last in _KIND_ORDER else len(_KIND_ORDER), kind)


def module_sort_key(name: str) -> tuple[int, tuple[int, str]]:
    """Layer, then module type in model order (q, k, v, o, gate, up, down)."""
    layer, kind = split_module(name)
    return (-1 if layer is None else layer, _kind_order(kind))


def fmt_norm(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


CELL_W = 56
CELL_H = 30
LABEL_W = 150
TOP = 30


def heatmap_svg(grid: NormGrid, title: str) -> Markup:
    """The grid as coloured cells (darker = larger norm) with axis labels and a legend."""
    n_cols, n_rows = len(grid.layers), len(grid.kinds)
    cell_w = CELL_W if n_cols <= 16 else max(8, 900 // n_cols)
    plot_w = n_cols * cell_w
    legend_y = TOP + n_rows * CELL_H + 34
    width = LABEL_W + max(plot_w, 260) + 20
    height = legend_y + 46
    low = positive_low(grid)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" role="img" '
        f'aria-label="{escape(title)}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}"><title>{escape(title)}</title>',
        f'<text class="hm-axis" x="{LABEL_W}" y="14">layer →</text>',
    ]
    step = max(1, math.ceil(n_cols / (plot_w / 28)))
    for j, layer in enumerate(grid.layers):
        if j % step == 0 or j == n_cols - 1:
            label = DASH if layer is None else str(layer)
            parts.append(
                f'<text class="hm-tick" x="{LABEL_W + j * cell_w + cell_w / 2:.0f}" '
                f'y="{TOP - 4}" text-anchor="middle">{label}</text>'
            )
    for i, kind in enumerate(grid.kinds):
        y = TOP + i * CELL_H
        short = kind if len(kind) <= 22 else "…" + kind[-21:]
        parts.append(
            f'<text class="hm-tick" x="{LABEL_W - 8}" y="{y + CELL_H / 2 + 4:.0f}" '
            f'text-anchor="end">{escape(short)}</text>'
        )
        for j, layer in enumerate(grid.layers):
            cell = grid.cells.get((kind, layer))
            x = LABEL_W + j * cell_w
            if cell is None:
                continue
            if cell.norm is None:
                fill, cls = "#ffffff", "hm-cell hm-missing"
            elif cell.norm <= 0:
                fill, cls = color_for(0.0), "hm-cell hm-zero"
            else:
                fill, cls = color_for(log_position(cell.norm, low, grid.high)), "hm-cell"
            parts.append(
                f'<rect class="{cls}" x="{x}" y="{y}" width="{cell_w - 2}" height="{CELL_H - 2}" '
                f'fill="{fill}"><title>{escape(cell.module)}: ‖ΔW‖ = '
                f"{fmt_norm(cell.norm)}</title></rect>"
            )
    # legend: a gradient bar, log scale: the smallest non-zero norm, the geometric middle,
    # the largest
    stops = "".join(
        f'<stop offset="{k / (len(_SCALE) - 1):.3f}" stop-color="{c}"/>'
        for k, c in enumerate(_SCALE)
    )
    parts.append(f'<defs><linearGradient id="hm-grad">{stops}</linearGradient></defs>')
    parts.append(
        f'<text class="hm-axis" x="{LABEL_W - 8}" y="{legend_y + 13}" '
        f'text-anchor="end">‖ΔW‖, log scale</text>'
    )
    parts.append(
        f'<rect x="{LABEL_W}" y="{legend_y}" width="200" height="16" '
        f'fill="url(#hm-grad)" stroke="#555"/>'
    )
    middle = math.sqrt(low * grid.high) if low > 0 else None
    for x, value, anchor in (
        (LABEL_W, low, "start"),
        (LABEL_W + 100, middle, "middle"),
        (LABEL_W + 200, grid.high, "end"),
    ):
        if value is not None and (value > 0 or anchor == "start"):
            parts.append(
                f'<text class="hm-tick hm-legend" x="{x}" y="{legend_y + 32}" '
                f'text-anchor="{anchor}">{fmt_norm(value)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def dom_id(text: str) -> str:
    """A value usable as an HTML id."""
    return _SAFE_ID.sub("-", text)[:80]
