"""Charts as inline SVG, drawn on the server from plain numbers; pure (no I/O).

Each chart is an `<svg role="img">` with a title and a description, so it reads out as text, and
uses classes only (no inline style: the console's Content-Security-Policy forbids it). Every label
is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

SERIES_CLASSES = ("s0", "s1", "s2", "s3", "s4", "s5", "s6")


def _num(value: float) -> str:
    return f"{value:.1f}"


def bar_chart(title: str, bars: Sequence[tuple[str, float]], unit: str = "", width: int = 560) -> Markup:
    """Horizontal bars, one per (label, value), scaled to the largest value."""
    row_h, label_w, pad = 22, 170, 6
    height = pad * 2 + row_h * max(len(bars), 1)
    top = max((value for _, value in bars), default=0.0) or 1.0
    span = width - label_w - 90
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{_id(title)}-t">',
        f'<title id="{_id(title)}-t">{escape(title)}</title>',
    ]
    for index, (label, value) in enumerate(bars):
        y = pad + index * row_h
        length = max(span * value / top, 1.0 if value > 0 else 0.0)
        parts.append(
            f'<text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
            f'<rect class="bar s{index % len(SERIES_CLASSES)}" x="{label_w}" y="{y + 3}" width="{_num(length)}" height="{row_h - 6}"/>'
            f'<text class="value" x="{_num(label_w + length + 6)}" y="{y + 15}">{escape(_value(value, unit))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and value is escaped above


def _value(value: float, unit: str) -> str:
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return f"{text} {unit}".strip()


def _id(title: str) -> str:
    return "c" + "".join(ch for ch in title.lower() if ch.isalnum())[:40]


def line_chart(
    title: str,
    points: Sequence[tuple[float, float]],
    y_max: float,
    y_label: str,
    width: int = 560,
    height: int = 160,
) -> Markup:
    """A line over time: `points` are (UTC seconds, value) oldest first, the y axis 0..`y_max`."""
    left, right, top, bottom = 44, 10, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{_id(title)}-t">',
        f'<title id="{_id(title)}-t">{escape(title)}</title>',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>',
        f'<text class="label" x="{left - 4}" y="{top + 8}" text-anchor="end">{escape(_value(y_max, ""))}</text>',
        f'<text class="label" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
        f'<text class="label" x="{left + plot_w}" y="{height - 6}" text-anchor="end">{escape(y_label)}</text>',
    ]
    if len(points) >= 1:
        t0, t1 = points[0][0], points[-1][0]
        t_span = (t1 - t0) or 1.0
        scale = y_max or 1.0
        coords = [
            (left + plot_w * (t - t0) / t_span, top + plot_h - plot_h * min(v, scale) / scale)
            for t, v in points
        ]
        if len(coords) == 1:
            coords.append((left + plot_w, coords[0][1]))
        path = " ".join(f"{_num(x)},{_num(y)}" for x, y in coords)
        parts.append(f'<polyline class="line" points="{path}"/>')
        parts.append(f'<text class="label" x="{left}" y="{height - 6}">{len(points)} samples</text>')
    else:
        parts.append(f'<text class="label" x="{left + 8}" y="{top + plot_h / 2}">no samples yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and value is escaped above


@dataclass(frozen=True)
class GraphNode:
    """A node on the federation graph: its name, link state and catalog age (None for this node)."""

    name: str
    state: str
    detail: str = ""


def federation_graph(
    center: str, partners: Sequence[GraphNode], width: int = 560, height: int = 360
) -> Markup:
    """This node in the middle and its partners around it, each link drawn in its state's class
    (`ok`, `failing`, `never`...) and labelled with the state in words."""
    cx, cy = width / 2, height / 2
    radius = min(width, height) / 2 - 50
    parts = [
        f'<svg class="chart graph" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'aria-labelledby="graph-t graph-d">',
        '<title id="graph-t">Federation graph</title>',
        f'<desc id="graph-d">{escape(center)} and {len(partners)} partner(s): '
        + escape("; ".join(f"{p.name} {p.state}" for p in partners))
        + "</desc>",
    ]
    spots = []
    for index, partner in enumerate(partners):
        angle = 2 * math.pi * index / max(len(partners), 1) - math.pi / 2
        x, y = cx + radius * math.cos(angle), cy + radius * math.sin(angle)
        # Labels sit beyond the node, away from its link.
        label = (cx + (radius + 30) * math.cos(angle), cy + (radius + 30) * math.sin(angle) + 4)
        spots.append((partner, x, y, label))
    for partner, x, y, _ in spots:
        parts.append(
            f'<line class="link link-{_state_class(partner.state)}" x1="{_num(cx)}" y1="{_num(cy)}" x2="{_num(x)}" y2="{_num(y)}"/>'
        )
    parts.append(f'<circle class="node self" cx="{_num(cx)}" cy="{_num(cy)}" r="26"/>')
    parts.append(
        f'<text class="node-label" x="{_num(cx)}" y="{_num(cy + 4)}" text-anchor="middle">{escape(center)}</text>'
    )
    small = len(partners) > 24
    for partner, x, y, (lx, ly) in spots:
        parts.append(
            f'<circle class="node peer link-{_state_class(partner.state)}" cx="{_num(x)}" cy="{_num(y)}" r="{6 if small else 16}"/>'
        )
        if not small:
            parts.append(
                f'<text class="node-label" x="{_num(lx)}" y="{_num(ly)}" text-anchor="middle">'
                f"{escape(partner.name)} · {escape(partner.state)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label and value is escaped above


def _state_class(state: str) -> str:
    return state if state in ("ok", "failing", "never", "rejected", "alert") else "other"
