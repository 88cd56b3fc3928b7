"""National totals, staleness and catalog comparison (pure): what a supervisor makes of reports.

- Totals add up each node's latest report by pool region and chip family (the chip catalogue's
  key, `connectors.chips`; a chip it does not know keeps its vendor and model).
- A node is `stopped` when no report arrived within `stale_intervals` of the interval it declared.
- A report contradicts the node's catalog when the catalog offers a pool and chip the report does
  not have, the report has one the catalog lacks, the catalog shows more free chips or units than
  the report's capacity, or a compute identifier the report does not carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.chips import canonical_chip
from connectors.errors import UnknownChip
from node.supervision.figures import BASIS_POINTS, figure_key, pool_figures

_SUMMED = ("capacity_units", "free_units", "capacity_chips", "free_chips", "capacity_cpus", "free_cpus")
_VOLUMES = ("orders", "order_amount", "sales", "sales_amount", "unit_hours")
MAX_PROBLEMS = 20


def chip_family(vendor: str, model: str) -> str:
    """The chip catalogue's key for a vendor and model, else `vendor model` as given (lower case)."""
    for name in (f"{vendor} {model}", model):
        try:
            return canonical_chip(name)
        except UnknownChip:
            continue
    return f"{vendor} {model}".lower()


@dataclass(frozen=True)
class NodeLatest:
    """What a supervisor holds of one registered node: its latest report (if any) and last check."""

    node: str
    last_seq: int = 0
    last_received_ts: int | None = None
    interval_s: int | None = None
    region: str | None = None
    pools: Sequence[Mapping[str, Any]] = ()
    trades: Sequence[Mapping[str, Any]] = ()
    check_status: str | None = None
    check_detail: list[str] = field(default_factory=list)
    check_ts: int | None = None


def is_stopped(latest: NodeLatest, now_ts: int, stale_intervals: int) -> bool:
    """Whether `latest`'s reports stopped: none ever, or none within `stale_intervals` intervals."""
    if latest.last_received_ts is None or latest.interval_s is None:
        return True
    return now_ts - latest.last_received_ts > stale_intervals * latest.interval_s


def node_flags(latest: NodeLatest, now_ts: int, stale_intervals: int) -> list[str]:
    """The node's flags: `never_reported`, `stopped`, `contradicts_catalog`."""
    flags = []
    if latest.last_received_ts is None:
        flags.append("never_reported")
    elif is_stopped(latest, now_ts, stale_intervals):
        flags.append("stopped")
    if latest.check_status == "contradiction":
        flags.append("contradicts_catalog")
    return flags


def _utilisation(row: Mapping[str, int]) -> int:
    for capacity, free in (("capacity_chips", "free_chips"), ("capacity_cpus", "free_cpus")):
        if row[capacity] > 0:
            return (row[capacity] - min(row[free], row[capacity])) * BASIS_POINTS // row[capacity]
    return 0


def national_totals(nodes: Iterable[NodeLatest]) -> dict[str, Any]:
    """Totals of every node's latest report: rows by (region, chip family), trade volumes by
    currency (of each node's latest period), and the grand totals."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    volumes: dict[str, dict[str, int]] = {}
    reporting = 0
    for latest in nodes:
        if latest.last_received_ts is None:
            continue
        reporting += 1
        for pool in latest.pools:
            key = (str(pool["region"]), chip_family(str(pool["chip_vendor"]), str(pool["chip_model"])))
            row = rows.setdefault(
                key,
                {
                    "region": key[0],
                    "chip_family": key[1],
                    "nodes": set(),
                    "pools": 0,
                    **dict.fromkeys(_SUMMED, 0),
                },
            )
            row["nodes"].add(latest.node)
            row["pools"] += 1
            for name in _SUMMED:
                row[name] += int(pool[name])
        for trade in latest.trades:
            volume = volumes.setdefault(str(trade["currency"]), dict.fromkeys(_VOLUMES, 0))
            for name in _VOLUMES:
                volume[name] += int(trade[name])
    table = []
    for key in sorted(rows):
        row = rows[key]
        table.append({**row, "nodes": len(row["nodes"]), "utilisation_bp": _utilisation(row)})
    grand = {name: sum(row[name] for row in table) for name in _SUMMED}
    grand["utilisation_bp"] = _utilisation(grand)
    return {
        "reporting_nodes": reporting,
        "by_region_chip": table,
        "total": grand,
        "trades": [{"currency": c, **volumes[c]} for c in sorted(volumes)],
    }


def compare_with_catalog(
    reported: Sequence[Mapping[str, Any]], catalog_offers: Iterable[Mapping[str, Any]]
) -> list[str]:
    """How a node's reported pool figures contradict the offers of its own signed catalog (at most
    MAX_PROBLEMS lines; empty when they agree)."""
    problems: list[str] = []
    by_key = {figure_key(pool): pool for pool in reported}
    offered = {figure_key(f.to_json()): f for f in pool_figures(catalog_offers, {})}
    for key, figure in offered.items():
        where = "pool {} ({}) {} {}".format(*key)
        pool = by_key.get(key)
        if pool is None:
            problems.append(f"{where}: in the catalog but not reported")
            continue
        if figure.free_chips > int(pool["capacity_chips"]):
            problems.append(
                f"{where}: the catalog offers {figure.free_chips} free chips, the report's capacity is "
                f"{pool['capacity_chips']}"
            )
        if figure.free_units > int(pool["capacity_units"]):
            problems.append(
                f"{where}: the catalog offers {figure.free_units} free units, the report's capacity is "
                f"{pool['capacity_units']}"
            )
        missing = sorted(set(figure.compute_ids) - set(pool.get("compute_ids", ())))
        if missing:
            problems.append(f"{where}: compute identifiers {', '.join(missing)} are not reported")
    for key in sorted(by_key.keys() - offered.keys()):
        problems.append("pool {} ({}) {} {}: reported but not in the catalog".format(*key))
    return problems[:MAX_PROBLEMS]


def node_view(latest: NodeLatest, now_ts: int, stale_intervals: int) -> dict[str, Any]:
    """One registered node as the supervision API shows it."""
    return {
        "node": latest.node,
        "region": latest.region,
        "last_seq": latest.last_seq,
        "last_received_ts": latest.last_received_ts,
        "interval_s": latest.interval_s,
        "pools": list(latest.pools),
        "trades": list(latest.trades),
        "flags": node_flags(latest, now_ts, stale_intervals),
        "check": {"status": latest.check_status, "detail": latest.check_detail, "ts": latest.check_ts},
    }


def summary(nodes: list[NodeLatest], supervisor: str, now_ts: int, stale_intervals: int) -> dict[str, Any]:
    """What `GET /api/v1/supervision` and `cpnode supervision summary` show."""
    views = [node_view(latest, now_ts, stale_intervals) for latest in nodes]
    return {
        "supervisor": supervisor,
        "now_ts": now_ts,
        "stale_intervals": stale_intervals,
        "registered_nodes": len(nodes),
        "flagged": [view["node"] for view in views if view["flags"]],
        "totals": national_totals(nodes),
        "nodes": views,
    }
