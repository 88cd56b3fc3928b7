"""Figure 9 of `cpnode plan sweep` shows every target's line: series that coincide (targets 0.999 and
0.9995 need the same plans over most availabilities) are drawn in different markers and dashes, the
later one smaller and on top, so neither hides the other."""

from __future__ import annotations

from typing import cast

from node.availability import load_architecture
from node.availability.sweep import figure9
from node.cli.plan_files import shipped_architecture
from node.cli.plan_sweep import build_figure


def test_coinciding_targets_stay_visible() -> None:
    """The 0.999 and 0.9995 lines overlap at some availability, and differ in marker and dashes, with
    the later drawn smaller and above the earlier."""
    cells = figure9(load_architecture(shipped_architecture("paper")))
    figure = build_figure(cells, "target", "availability", "figure 9")
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    low, high = lines["target 0.999"], lines["target 0.9995"]
    assert any(
        a == b
        for a, b in zip(cast(list[float], low.get_ydata()), cast(list[float], high.get_ydata()), strict=True)
    )
    assert (low.get_marker(), low.get_linestyle()) != (high.get_marker(), high.get_linestyle())
    assert high.get_markersize() < low.get_markersize()
    assert high.get_zorder() > low.get_zorder()
    styles = [
        (line.get_marker(), line.get_linestyle())
        for label, line in lines.items()
        if str(label).startswith("target ")
    ]
    assert len(set(styles)) == len(styles)
