"""Figures the console shows, computed from what the API answered; pure (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PoolUse:
    """One pool's capacity now: units in use, in all, and free (in the pool's capacity unit)."""

    name: str
    state: str
    used: int
    total: int
    unit: str

    @property
    def percent(self) -> int:
        """Use as a whole percentage (0 for a pool without capacity)."""
        return round(100 * self.used / self.total) if self.total else 0


def pool_use(pools: Mapping[str, Any]) -> list[PoolUse]:
    """Each pool's use from `GET /api/v1/pools`: offers that share a capacity (same pool and
    region) count it once, at its largest size; free capacity is what the offers say is free."""
    groups: dict[tuple[str, str], tuple[int, int, str]] = {}
    for offer in pools.get("offers", []):
        key = (str(offer["pool"]), str(offer.get("region_id", "")))
        cost = int(offer.get("capacity_cost") or 1)
        total = int(offer.get("total", 0)) * cost
        free = int(offer.get("capacity_free", offer.get("free", 0)) or 0)
        unit = str(offer.get("capacity_unit") or "units")
        old_total, old_free, _ = groups.get(key, (0, 0, unit))
        groups[key] = (max(old_total, total), max(old_free, free), unit)
    per_pool: dict[str, tuple[int, int, str]] = {}
    for (pool, _), (total, free, unit) in groups.items():
        t, f, _u = per_pool.get(pool, (0, 0, unit))
        per_pool[pool] = (t + total, f + min(free, total), unit)
    rows = []
    for pool in pools.get("pools", []):
        if pool.get("kind", "compute") != "compute":
            continue
        total, free, unit = per_pool.get(str(pool["name"]), (0, 0, "units"))
        rows.append(PoolUse(str(pool["name"]), str(pool.get("state", "")), max(total - free, 0), total, unit))
    return rows


def balances(accounts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ledger accounts with their posted balance (credits − debits) and pending holds."""
    rows = []
    for account in accounts:
        balance = int(account["credits_posted"]) - int(account["debits_posted"])
        rows.append(
            {
                **account,
                "balance": balance,
                "held": int(account["debits_pending"]) + int(account["credits_pending"]),
            }
        )
    return rows


def filter_rows(rows: Iterable[Mapping[str, Any]], **wanted: str) -> list[Mapping[str, Any]]:
    """The rows whose fields equal every non-empty value in `wanted`."""
    checks = {key: value for key, value in wanted.items() if value}
    return [row for row in rows if all(str(row.get(key)) == value for key, value in checks.items())]
