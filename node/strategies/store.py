"""The strategy registry and what each strategy chose (migration node_0014): strategies by name and
version, A/B splits, the orders each strategy chose, and their outcomes read back from the orders
and tasks themselves."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import write_transaction
from node.market.errors import StrategyError, UnknownStrategyError
from node.market.strategy_spec import KINDS, Kind, Strategy, builtin, check_params, parse_ref
from node.strategies.ab import Outcome, check_split, version_for
from node.tasks.tables import tasks_t
from node.trading.tables import orders_t

_md = sa.MetaData()
strategies_t = sa.Table(
    "strategies",
    _md,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(20)),
    sa.Column("params", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("created_ts", sa.BigInteger),
    sa.Column("retired_ts", sa.BigInteger),
)
splits_t = sa.Table(
    "strategy_splits",
    _md,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("split", sa.Text),
    sa.Column("updated_ts", sa.BigInteger),
)
chosen_t = sa.Table(
    "strategy_orders",
    _md,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("consumer", sa.String(63)),
    sa.Column("strategy", sa.String(63)),
    sa.Column("version", sa.Integer),
    sa.Column("kind", sa.String(20)),
    sa.Column("site", sa.String(100)),
    sa.Column("latency_us", sa.BigInteger),
    sa.Column("chosen_ms", sa.BigInteger),
)
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class Registered:
    """A registered version: the strategy, its note, when it was added and retired (UTC epoch s)."""

    strategy: Strategy
    note: str
    created_ts: int
    retired_ts: int | None

    def view(self) -> dict[str, Any]:
        """As the API shows it."""
        return {
            **self.strategy.view(),
            "note": self.note,
            "created_ts": self.created_ts,
            "retired_ts": self.retired_ts,
            "active": self.retired_ts is None,
        }


def _registered(row: Any) -> Registered:
    m = row._mapping
    strategy = Strategy(m["name"], m["version"], cast(Kind, m["kind"]), json.loads(m["params"]))
    return Registered(strategy, m["note"] or "", m["created_ts"], m["retired_ts"])


def add(engine: Engine, name: str, kind: str, params: Any, note: str, now_ts: int) -> Registered:
    """Register the next version of `name` (1 for a new name); StrategyError if it does not validate."""
    if not NAME_RE.fullmatch(name):
        raise StrategyError("name", f"must be 1–63 of a–z, 0–9 and '-', starting with a letter, got {name!r}")
    if name in KINDS:
        raise StrategyError("name", f"{name!r} is a built-in strategy; register yours under another name")
    if params is not None and not isinstance(params, dict):
        raise StrategyError("params", "must be a JSON object")
    checked = check_params(kind, params)
    with write_transaction(engine) as conn:
        last = conn.execute(
            sa.select(sa.func.max(strategies_t.c.version)).where(strategies_t.c.name == name)
        ).scalar_one_or_none()
        version = (last or 0) + 1
        conn.execute(
            sa.insert(strategies_t).values(
                name=name, version=version, kind=kind, params=json.dumps(checked, sort_keys=True),
                note=note, created_ts=now_ts, retired_ts=None,
            )
        )  # fmt: skip
    return Registered(Strategy(name, version, cast(Kind, kind), checked), note, now_ts, None)


def versions(engine: Engine, name: str | None = None) -> list[Registered]:
    """Every registered version (of `name`), by name then version."""
    query = sa.select(strategies_t).order_by(strategies_t.c.name, strategies_t.c.version)
    if name is not None:
        query = query.where(strategies_t.c.name == name)
    with engine.connect() as conn:
        return [_registered(row) for row in conn.execute(query)]


def retire(engine: Engine, name: str, version: int, now_ts: int) -> Registered:
    """Retire one version (retiring twice is not an error); it leaves any split that names it."""
    with write_transaction(engine) as conn:
        changed = conn.execute(
            sa.update(strategies_t)
            .where(
                strategies_t.c.name == name,
                strategies_t.c.version == version,
                strategies_t.c.retired_ts.is_(None),
            )
            .values(retired_ts=now_ts)
        ).rowcount
        if changed:
            conn.execute(sa.delete(splits_t).where(splits_t.c.name == name))
    found = [r for r in versions(engine, name) if r.strategy.version == version]
    if not found:
        raise UnknownStrategyError(f"strategy {name!r} has no version {version}")
    return found[0]


def set_split(engine: Engine, name: str, split: Any, now_ts: int) -> dict[int, int]:
    """Split `name`'s demands between its active versions by percentage (checked: sum 100)."""
    active = [r.strategy.version for r in versions(engine, name) if r.retired_ts is None]
    if not active:
        raise UnknownStrategyError(f"no strategy named {name!r} is registered")
    checked = check_split(split, active)
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(splits_t).where(splits_t.c.name == name))
        conn.execute(sa.insert(splits_t).values(name=name, split=json.dumps(checked), updated_ts=now_ts))
    return checked


def get_split(engine: Engine, name: str) -> dict[int, int] | None:
    """The split of `name`, None when it has none."""
    with engine.connect() as conn:
        text = conn.execute(sa.select(splits_t.c.split).where(splits_t.c.name == name)).scalar_one_or_none()
    return None if text is None else {int(k): v for k, v in json.loads(text).items()}


def resolve(engine: Engine, ref: str, consumer: str | None) -> Strategy:
    """The strategy a demand naming `ref` (`name` or `name@version`) runs with for `consumer`: the
    version named; else the split's choice for the consumer; else the latest active version; a
    built-in kind by its own name. UnknownStrategyError otherwise."""
    name, version = parse_ref(ref)
    registered = versions(engine, name)
    if not registered:
        if name in KINDS and version in (None, 0):
            return builtin(name)
        raise UnknownStrategyError(f"no strategy named {name!r} is registered (built-in: {', '.join(KINDS)})")
    active = {r.strategy.version: r.strategy for r in registered if r.retired_ts is None}
    if version is not None:
        if version not in active:
            state = "retired" if any(r.strategy.version == version for r in registered) else "unknown"
            raise UnknownStrategyError(
                f"version {version} of strategy {name!r} is {state} (active: {sorted(active)})"
            )
        return active[version]
    if not active:
        raise UnknownStrategyError(f"every version of strategy {name!r} is retired")
    split = get_split(engine, name)
    if split is not None and consumer is not None:
        return active[version_for(name, consumer, split)]
    return active[max(active)]


def record(
    engine: Engine,
    order_id: str,
    consumer: str,
    strategy: Strategy,
    site: str | None,
    latency_us: int | None,
    now_ms: int,
) -> None:
    """Note that `strategy` chose order `order_id` (again for the same order: kept as first noted)."""
    with write_transaction(engine) as conn:
        if conn.execute(sa.select(chosen_t.c.order_id).where(chosen_t.c.order_id == order_id)).first():
            return
        conn.execute(
            sa.insert(chosen_t).values(
                order_id=order_id, consumer=consumer, strategy=strategy.name, version=strategy.version,
                kind=strategy.kind, site=site, latency_us=latency_us, chosen_ms=now_ms,
            )
        )  # fmt: skip


def chosen(engine: Engine, order_id: str) -> dict[str, Any] | None:
    """Which strategy chose an order (None for an order no strategy chose)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(chosen_t).where(chosen_t.c.order_id == order_id)).first()
    return None if row is None else dict(row._mapping)


def outcomes(engine: Engine, name: str, version: int) -> list[Outcome]:
    """The orders a strategy version chose, with what they cost, when their task ran and how it ended."""
    query = (
        sa.select(
            chosen_t.c.order_id, chosen_t.c.latency_us, chosen_t.c.chosen_ms,
            orders_t.c.amount, orders_t.c.settled_amount, orders_t.c.state,
            tasks_t.c.seen_running_ms, tasks_t.c.outcome,
        )
        .select_from(chosen_t.join(orders_t, orders_t.c.id == chosen_t.c.order_id))
        .outerjoin(tasks_t, tasks_t.c.order_id == chosen_t.c.order_id)
        .where(chosen_t.c.strategy == name, chosen_t.c.version == version)
        .order_by(chosen_t.c.chosen_ms)
    )  # fmt: skip
    found: dict[str, Outcome] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            m = row._mapping
            if m["order_id"] in found:
                continue
            paid = m["settled_amount"] if m["settled_amount"] is not None else (
                m["amount"] if m["state"] not in ("rejected", "cancelled") else None
            )  # fmt: skip
            running = None
            if m["seen_running_ms"] is not None:
                running = max(0.0, (m["seen_running_ms"] - m["chosen_ms"]) / 1000)
            succeeded = None if m["outcome"] is None else m["outcome"] == "succeeded"
            latency = None if m["latency_us"] is None else m["latency_us"] / 1000
            found[m["order_id"]] = Outcome(m["order_id"], paid, running, succeeded, latency)
    return list(found.values())
