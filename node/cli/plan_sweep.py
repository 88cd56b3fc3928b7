"""`cpnode plan sweep`: the paper's evaluation recomputed, written as CSV files and figures.

Writes into DIR (default ./plan-sweep): table1.csv, figure9.csv, figure10.csv and figure9/figure10
as PNG and SVG (matplotlib, Agg backend, no display needed), and prints Table 1 with the paper's
printed value beside every cell where the exact planner does better.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.availability import AvailabilityError, load_architecture
from node.availability.paper import PAPER_AVAILABILITIES, PAPER_BACKUPS, PAPER_TARGETS
from node.availability.sweep import FIG10_TARGET, Cell, figure9, figure10, table1
from node.cli.common import CliError, add_json_argument, print_json, print_table
from node.cli.plan_files import shipped_architecture

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_OUT = Path("plan-sweep")
FORMATS = ("png", "svg")


def register_sweep(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode plan sweep` under `cpnode plan`."""
    parser = subcommands.add_parser(
        "sweep",
        help="recompute the paper's Table 1 and Figures 9-10",
        description="Recompute the paper's evaluation with the exact planner: Table 1 (backups 2), "
        "microservices vs sub-module availability and target (Figure 9) and vs backups (Figure 10), "
        "as CSV and PNG/SVG plots.",
    )
    parser.add_argument(
        "--architecture", type=Path, metavar="FILE", help="architecture file (default: the paper's)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR", help="output folder")
    parser.add_argument(
        "--formats", default=",".join(FORMATS), help="figure formats, comma-separated (default png,svg)"
    )
    parser.add_argument(
        "--fig10-target",
        type=float,
        default=FIG10_TARGET,
        metavar="T",
        help=f"target of Figure 10 (default {FIG10_TARGET}, the only one of the paper's targets its text admits)",
    )
    add_json_argument(parser)
    parser.set_defaults(handler=run_sweep)


def _cell_text(cell: Cell) -> str:
    text = cell.shown + ("" if cell.meets_target or cell.row in ("none", "full") else "*")
    if cell.difference is not None:
        text += "†"
    return text


def _cell_data(cell: Cell) -> dict[str, Any]:
    return {
        "row": cell.row,
        "submodule_availability": cell.availability,
        "backups": cell.backups,
        "target": cell.target,
        "microservices": cell.microservices,
        "availability": cell.plan_availability,
        "availability_percent": cell.shown,
        "meets_target": cell.meets_target,
        "paper_printed": cell.printed,
        "difference_pp": cell.difference,
    }


def write_csv(path: Path, cells: Sequence[Cell]) -> None:
    """Write one CSV row per cell."""
    rows = [_cell_data(cell) for cell in cells]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# One style per series: marker, dashes and size all differ, and each later series is drawn smaller
# and on top, so series that coincide (targets 0.999 and 0.9995 need the same plans over most of
# figure 9) stay visible as a small marker inside a larger one, on dashes over a solid line.
SERIES_STYLES: tuple[tuple[str, str, float, float], ...] = (
    ("o", "-", 11.0, 3.0),
    ("s", "--", 8.5, 2.4),
    ("^", "-.", 6.5, 1.9),
    ("D", ":", 4.8, 1.5),
    ("v", "--", 3.4, 1.1),
)


def series_style(index: int) -> dict[str, Any]:
    """Matplotlib keywords of the `index`-th series (marker, line style, sizes, z-order)."""
    marker, linestyle, markersize, linewidth = SERIES_STYLES[index % len(SERIES_STYLES)]
    return {
        "marker": marker,
        "linestyle": linestyle,
        "markersize": markersize,
        "linewidth": linewidth,
        "zorder": 3 + index,
    }


def draw(
    path_stem: Path, formats: Sequence[str], cells: Sequence[Cell], series: str, x: str, title: str
) -> list[Path]:
    """Plot microservices against `x` ("availability" or "backups"), one line per `series` value."""
    figure = build_figure(cells, series, x, title)
    written = []
    for fmt in formats:
        path = path_stem.with_suffix(f".{fmt}")
        figure.savefig(path, format=fmt)
        written.append(path)
    return written


def build_figure(cells: Sequence[Cell], series: str, x: str, title: str) -> Figure:
    """The figure `draw` saves: microservices against `x`, one styled line per `series` value."""
    try:
        from matplotlib.figure import Figure  # the Agg canvas; never opens a window
    except ImportError:
        raise CliError("plots need matplotlib: pip install 'cpnode[plots]'") from None
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.add_subplot()
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        key = f"target {cell.target:g}" if series == "target" else f"a = {cell.availability:g}"
        groups.setdefault(key, []).append(cell)
    unmet = [c for c in cells if not c.meets_target]
    if unmet:  # one legend entry for the rings drawn below
        axes.plot(
            [],
            [],
            marker="o",
            markersize=10,
            fillstyle="none",
            color="grey",
            linestyle="",
            label="target not met",
        )
    for index, (label, members) in enumerate(groups.items()):
        xs = [str(c.availability) if x == "availability" else str(c.backups) for c in members]
        ys = [c.microservices for c in members]
        axes.plot(xs, ys, label=label, **series_style(index))
        for xv, c in zip(xs, members, strict=True):
            if not c.meets_target:  # hollow marker: target not reachable, highest availability shown
                axes.plot(
                    [xv],
                    [c.microservices],
                    marker="o",
                    markersize=13,
                    fillstyle="none",
                    color="grey",
                    zorder=20,
                )
    axes.set_xlabel("sub-module availability" if x == "availability" else "backup instances")
    axes.set_ylabel("microservices")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def run_sweep(args: argparse.Namespace) -> int:
    """Handler of `cpnode plan sweep`."""
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise CliError(f"--formats: choose from {', '.join(FORMATS)}, got {args.formats!r}", exit_code=2)
    path = args.architecture or shipped_architecture("paper")
    try:
        architecture = load_architecture(path)
        cells = table1(architecture)
        fig9 = figure9(architecture)
        fig10 = figure10(architecture, target=args.fig10_target)
    except AvailabilityError as exc:
        raise CliError(str(exc), exit_code=2) from None
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "table1.csv", cells)
        write_csv(out / "figure9.csv", fig9)
        write_csv(out / "figure10.csv", fig10)
        figures = draw(
            out / "figure9",
            formats,
            fig9,
            "target",
            "availability",
            f"Microservices vs sub-module availability (backups {PAPER_BACKUPS})",
        )
        figures += draw(
            out / "figure10",
            formats,
            fig10,
            "availability",
            "backups",
            f"Microservices vs backups (target {args.fig10_target:g})",
        )
    except OSError as exc:
        raise CliError(f"cannot write to {out}: {exc.strerror}") from None
    files = [out / "table1.csv", out / "figure9.csv", out / "figure10.csv", *figures]
    if args.json:
        print_json(
            {
                "table1": [_cell_data(c) for c in cells],
                "figure9": [_cell_data(c) for c in fig9],
                "figure10": [_cell_data(c) for c in fig10],
                "files": [str(f) for f in files],
            }
        )
        return 0
    columns = ["plan"] + [f"a = {a:g}" for a in PAPER_AVAILABILITIES]
    rows = []
    labels = ["none", *(f"{t:g}" for t in PAPER_TARGETS), "full"]
    for label in labels:
        rows.append([label] + [_cell_text(c) for c in cells if c.row == label])
    print_table(
        f"Table 1: platform availability % ({architecture.name}, backups {PAPER_BACKUPS})", columns, rows
    )
    counts = [[label] + [str(c.microservices) for c in cells if c.row == label] for label in labels]
    print_table("Microservices of each plan", columns, counts)
    print("* target not met: the highest reachable availability is shown, as in the paper")
    for cell in cells:
        if cell.difference is not None:
            print(
                f"† a = {cell.availability:g}, target {cell.row}: the exact planner reaches {cell.shown} % with "
                f"{cell.microservices} microservices; the paper prints {cell.printed} % ({cell.difference:+.5f} points)"
            )
    for file in files:
        print(f"wrote {file}")
    return 0
