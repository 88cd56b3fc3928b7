"""Supervision queries: a node's supervisors and outbox; a supervisor's registered nodes, reports
and checks. Blocking calls over the node's engine (run them off the event loop)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from federation.errors import AuthError, ConflictError, NotFoundError
from federation.keys import parse_public_key
from federation.nonces import claim_nonce_in
from federation.partners import check_node_name
from node.db import write_transaction
from node.supervision.report import Report, TradeVolume
from node.supervision.tables import delivery_t, node_state_t, nodes_t, outbox_t, reports_t, supervisors_t
from node.supervision.totals import NodeLatest
from node.trading.tables import orders_t, sales_t

# Trades that happened: accepted by the seller and not undone since.
ORDER_TRADED = ("accepted", "settling", "posting", "settled")
SALE_TRADED = ("accepted", "settling", "settled")


@dataclass(frozen=True)
class Pinned:
    """A supervisor a node reports to, or a node registered with a supervisor: name, URL, key."""

    name: str
    url: str
    public_key: str
    source: str = "cli"

    def __post_init__(self) -> None:
        check_node_name(self.name)
        parse_public_key(self.public_key)

    def to_json(self) -> dict[str, Any]:
        """As listed by the CLI and the API."""
        return {"name": self.name, "url": self.url, "public_key": self.public_key, "source": self.source}


def _pinned(row: Any) -> Pinned:
    return Pinned(row.name, row.url, row.public_key, row.source)


def list_pinned(engine: Engine, table: sa.Table) -> list[Pinned]:
    """Every row of `supervisors_t` or `nodes_t`, by name."""
    with engine.connect() as conn:
        return [_pinned(row) for row in conn.execute(sa.select(table).order_by(table.c.name))]


def get_pinned(engine: Engine, table: sa.Table, name: str) -> Pinned | None:
    """The row called `name` of `supervisors_t` or `nodes_t`, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(table).where(table.c.name == name)).first()
    return None if row is None else _pinned(row)


def add_pinned(engine: Engine, table: sa.Table, pinned: Pinned, now_ts: int) -> None:
    """Pin a supervisor or register a node; ConflictError if the name is taken."""
    what = "supervisor" if table is supervisors_t else "node"
    with write_transaction(engine) as conn:
        if conn.execute(sa.select(table.c.name).where(table.c.name == pinned.name)).first() is not None:
            raise ConflictError(f"{what} {pinned.name!r} already exists; remove it first")
        conn.execute(
            table.insert().values(
                name=pinned.name,
                url=pinned.url,
                public_key=pinned.public_key,
                source=pinned.source,
                added_ts=now_ts,
            )
        )


def remove_pinned(engine: Engine, table: sa.Table, name: str) -> None:
    """Forget a supervisor or node added from the CLI. What was sent or received stays on record,
    and so do sequence numbers: adding it again continues where it left off."""
    what = "supervisor" if table is supervisors_t else "node"
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(table.c.source).where(table.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no {what} called {name!r}")
        if row.source == "config":
            raise ConflictError(f"{what} {name!r} comes from the config file; remove it there")
        conn.execute(table.delete().where(table.c.name == name))
        if table is supervisors_t:
            conn.execute(delivery_t.delete().where(delivery_t.c.supervisor == name))


def sync_config_supervisors(engine: Engine, wanted: Iterable[Pinned], now_ts: int) -> None:
    """Make the `config` supervisors in the database equal `wanted` (CLI-added ones are kept)."""
    by_name = {p.name: p for p in wanted}
    with write_transaction(engine) as conn:
        rows = {row.name: row for row in conn.execute(sa.select(supervisors_t))}
        for name, row in rows.items():
            if row.source == "config" and name not in by_name:
                conn.execute(supervisors_t.delete().where(supervisors_t.c.name == name))
        for name, pinned in by_name.items():
            values = {"url": pinned.url, "public_key": pinned.public_key, "source": "config"}
            if name in rows:
                conn.execute(supervisors_t.update().where(supervisors_t.c.name == name).values(values))
            else:
                conn.execute(supervisors_t.insert().values(name=name, added_ts=now_ts, **values))


# --- a node's outbox ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxEntry:
    """One report made for a supervisor: its number, period, bytes and delivery state."""

    supervisor: str
    seq: int
    period_start_ts: int
    period_end_ts: int
    created_ts: int
    body: bytes
    state: str
    attempts: int


def last_made(engine: Engine, supervisor: str) -> OutboxEntry | None:
    """The newest report made for `supervisor`, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(outbox_t)
            .where(outbox_t.c.supervisor == supervisor)
            .order_by(outbox_t.c.seq.desc())
            .limit(1)
        ).first()
    return None if row is None else _entry(row)


def _entry(row: Any) -> OutboxEntry:
    return OutboxEntry(
        row.supervisor,
        row.seq,
        row.period_start_ts,
        row.period_end_ts,
        row.created_ts,
        bytes(row.body),
        row.state,
        row.attempts,
    )


def add_made(engine: Engine, entry: OutboxEntry, sha256: str) -> bool:
    """Record a report before it is sent; False when that number is already taken."""
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                outbox_t.insert().values(
                    supervisor=entry.supervisor,
                    seq=entry.seq,
                    period_start_ts=entry.period_start_ts,
                    period_end_ts=entry.period_end_ts,
                    created_ts=entry.created_ts,
                    sha256=sha256,
                    body=entry.body,
                    state="pending",
                    attempts=0,
                )
            )
    except IntegrityError:
        return False
    return True


def pending(engine: Engine, supervisor: str, limit: int) -> list[OutboxEntry]:
    """Reports for `supervisor` not yet delivered, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(outbox_t)
            .where(outbox_t.c.supervisor == supervisor, outbox_t.c.state == "pending")
            .order_by(outbox_t.c.seq)
            .limit(limit)
        )
        return [_entry(row) for row in rows]


def mark(engine: Engine, entry: OutboxEntry, state: str, now_ts: int, error: str | None = None) -> None:
    """Record one delivery attempt of `entry`: `sent`, `refused` (for good), or still `pending`."""
    values: dict[str, Any] = {
        "state": state,
        "attempts": outbox_t.c.attempts + 1,
        "last_attempt_ts": now_ts,
        "last_error": error,
    }
    if state == "sent":
        values["sent_ts"] = now_ts
    with write_transaction(engine) as conn:
        conn.execute(
            outbox_t.update()
            .where(outbox_t.c.supervisor == entry.supervisor, outbox_t.c.seq == entry.seq)
            .values(values)
        )


def delivery(engine: Engine, supervisor: str) -> tuple[int, int]:
    """(consecutive failures, next attempt time) of deliveries to `supervisor`."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(delivery_t).where(delivery_t.c.supervisor == supervisor)).first()
    return (0, 0) if row is None else (row.failures, row.next_attempt_ts)


def set_delivery(engine: Engine, supervisor: str, failures: int, next_attempt_ts: int) -> None:
    """Remember the backoff of deliveries to `supervisor`."""
    with write_transaction(engine) as conn:
        done = conn.execute(
            delivery_t.update()
            .where(delivery_t.c.supervisor == supervisor)
            .values(failures=failures, next_attempt_ts=next_attempt_ts)
        )
        if done.rowcount == 0:
            conn.execute(
                delivery_t.insert().values(
                    supervisor=supervisor, failures=failures, next_attempt_ts=next_attempt_ts
                )
            )


def outbox_overview(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per supervisor: reports by state, the newest number, last delivery and its error."""
    with engine.connect() as conn:
        counts = conn.execute(
            sa.select(
                outbox_t.c.supervisor, outbox_t.c.state, sa.func.count(), sa.func.max(outbox_t.c.seq)
            ).group_by(outbox_t.c.supervisor, outbox_t.c.state)
        ).all()
        sent = conn.execute(
            sa.select(outbox_t.c.supervisor, sa.func.max(outbox_t.c.sent_ts)).group_by(outbox_t.c.supervisor)
        ).all()
        errors = {}
        for name in {row[0] for row in counts}:
            errors[name] = conn.execute(
                sa.select(outbox_t.c.seq, outbox_t.c.last_error)
                .where(outbox_t.c.supervisor == name, outbox_t.c.last_error.is_not(None))
                .order_by(outbox_t.c.last_attempt_ts.desc(), outbox_t.c.seq.desc())
                .limit(1)
            ).first()
    overview: dict[str, dict[str, Any]] = {}
    for name, state, count, top in counts:
        item = overview.setdefault(
            name,
            {"sent": 0, "pending": 0, "refused": 0, "last_seq": 0, "last_sent_ts": None, "last_error": None},
        )
        item[state] = count
        item["last_seq"] = max(item["last_seq"], top)
    for name, last in sent:
        overview[name]["last_sent_ts"] = last
    for name, last in errors.items():
        if last is not None:
            overview[name]["last_error"] = f"report {last.seq}: {last.last_error}"
    return overview


def made_for(engine: Engine, supervisor: str, limit: int) -> list[dict[str, Any]]:
    """The reports made for `supervisor`, newest first: number, period, hash and delivery state."""
    columns = [c for c in outbox_t.c if c.name != "body"]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*columns)
            .where(outbox_t.c.supervisor == supervisor)
            .order_by(outbox_t.c.seq.desc())
            .limit(limit)
        )
        return [dict(row._mapping) for row in rows]


def trade_volumes(engine: Engine, start_ts: int, end_ts: int) -> list[TradeVolume]:
    """Trades made in [start_ts, end_ts), by currency: orders placed here and sales to partners."""
    volumes: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for table, states, prefix in ((orders_t, ORDER_TRADED, "order"), (sales_t, SALE_TRADED, "sales")):
            rows = conn.execute(
                sa.select(
                    table.c.currency,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(table.c.amount), 0),
                    sa.func.coalesce(sa.func.sum(table.c.units * table.c.hours), 0),
                )
                .where(table.c.created_ts >= start_ts, table.c.created_ts < end_ts, table.c.state.in_(states))
                .group_by(table.c.currency)
            )
            for currency, count, amount, unit_hours in rows:
                volume = volumes.setdefault(currency, {})
                volume["orders" if prefix == "order" else "sales"] = int(count)
                volume[f"{prefix}_amount"] = int(amount)
                volume["unit_hours"] = volume.get("unit_hours", 0) + int(unit_hours)
    return [TradeVolume(currency, **volumes[currency]) for currency in sorted(volumes)]


# --- a supervisor's records ----------------------------------------------------------------------


@dataclass(frozen=True)
class Nonce:
    """The (key id, nonce) of the signed request that carried a report, used until `until_ts`."""

    kid: str
    nonce: str
    until_ts: int


def record_report(
    engine: Engine, report: Report, body: bytes, now_ts: int, nonce: Nonce | None = None
) -> str:
    """Keep an accepted report: `accepted`, or `duplicate` when the very same report (same number,
    same bytes) was kept before. ConflictError `sequence_repeated` for another report under a number
    already used, `sequence_rollback` for a number below the last one accepted; AuthError `replayed`
    when `nonce` (claimed in the same transaction) was used already."""
    try:
        with write_transaction(engine) as conn:
            if nonce is not None and not claim_nonce_in(conn, nonce.kid, nonce.nonce, nonce.until_ts, now_ts):
                raise AuthError("nonce already used (replayed request)", code="replayed")
            state = conn.execute(
                sa.select(node_state_t).where(node_state_t.c.node == report.node).with_for_update()
            ).first()
            if state is not None and report.seq <= state.last_seq:
                kept = conn.execute(
                    sa.select(reports_t.c.sha256).where(
                        reports_t.c.node == report.node, reports_t.c.seq == report.seq
                    )
                ).scalar()
                if kept == report.sha256:
                    return "duplicate"
                if report.seq == state.last_seq:
                    raise ConflictError(
                        f"report {report.seq} of {report.node} was already received with other content",
                        code="sequence_repeated",
                    )
                raise ConflictError(
                    f"report {report.seq} of {report.node} is below the last accepted {state.last_seq} "
                    "(sequence rolled back)",
                    code="sequence_rollback",
                )
            conn.execute(
                reports_t.insert().values(
                    node=report.node,
                    seq=report.seq,
                    sha256=report.sha256,
                    key_id=report.key_id,
                    issued_ts=report.issued_ts,
                    received_ts=now_ts,
                    period_start_ts=report.period_start_ts,
                    period_end_ts=report.period_end_ts,
                    interval_s=report.interval_s,
                    region=report.region,
                    body=body,
                )
            )
            latest = {
                "last_seq": report.seq,
                "last_sha256": report.sha256,
                "last_received_ts": now_ts,
                "interval_s": report.interval_s,
            }
            if state is None:
                conn.execute(node_state_t.insert().values(node=report.node, **latest))
            else:
                conn.execute(node_state_t.update().where(node_state_t.c.node == report.node).values(latest))
    except IntegrityError:
        # Another replica stored a report of this node at the same moment: the sender retries.
        raise ConflictError(
            f"report {report.seq} of {report.node} raced another one; send it again", code="sequence_busy"
        ) from None
    return "accepted"


def _figures(body: bytes) -> dict[str, Any]:
    # Stored bodies passed report.read_report; only their figures are needed here.
    document = json.loads(body)
    return {"pools": document["pools"], "trades": document["trades"], "region": document["region"]}


def latest_reports(engine: Engine) -> list[NodeLatest]:
    """Each registered node with its latest report and last catalog check, by name."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                nodes_t.c.name,
                node_state_t,
                reports_t.c.body,
            )
            .select_from(
                nodes_t.outerjoin(node_state_t, node_state_t.c.node == nodes_t.c.name).outerjoin(
                    reports_t,
                    sa.and_(reports_t.c.node == nodes_t.c.name, reports_t.c.seq == node_state_t.c.last_seq),
                )
            )
            .order_by(nodes_t.c.name)
        ).all()
    result = []
    for row in rows:
        if row.last_seq is None or row.body is None:
            result.append(NodeLatest(row.name))
            continue
        figures = _figures(bytes(row.body))
        result.append(
            NodeLatest(
                row.name,
                last_seq=row.last_seq,
                last_received_ts=row.last_received_ts,
                interval_s=row.interval_s,
                region=figures["region"],
                pools=figures["pools"],
                trades=figures["trades"],
                check_status=row.check_status,
                check_detail=json.loads(row.check_detail) if row.check_detail else [],
                check_ts=row.check_ts,
            )
        )
    return result


def history(engine: Engine, node: str, limit: int, before_seq: int | None = None) -> list[dict[str, Any]]:
    """`node`'s reports, newest first (below `before_seq` when given), with their figures."""
    query = sa.select(reports_t).where(reports_t.c.node == node)
    if before_seq is not None:
        query = query.where(reports_t.c.seq < before_seq)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(reports_t.c.seq.desc()).limit(limit)).all()
    return [
        {
            "seq": row.seq,
            "sha256": row.sha256,
            "key_id": row.key_id,
            "issued_ts": row.issued_ts,
            "received_ts": row.received_ts,
            "period_start_ts": row.period_start_ts,
            "period_end_ts": row.period_end_ts,
            "interval_s": row.interval_s,
            **_figures(bytes(row.body)),
        }
        for row in rows
    ]


def set_check(engine: Engine, node: str, status: str, detail: list[str], seq: int, now_ts: int) -> None:
    """Record the outcome of comparing `node`'s report `seq` with its catalog."""
    with write_transaction(engine) as conn:
        conn.execute(
            node_state_t.update()
            .where(node_state_t.c.node == node)
            .values(check_status=status, check_detail=json.dumps(detail), check_ts=now_ts, checked_seq=seq)
        )


def checks_due(engine: Engine, now_ts: int, every_s: float) -> list[tuple[Pinned, int]]:
    """Registered nodes whose latest report was not compared with their catalog yet, or not for
    `every_s`; with that report's number."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(nodes_t, node_state_t.c.last_seq)
            .join(node_state_t, node_state_t.c.node == nodes_t.c.name)
            .where(
                sa.or_(
                    node_state_t.c.checked_seq.is_(None),
                    node_state_t.c.checked_seq != node_state_t.c.last_seq,
                    node_state_t.c.check_ts <= now_ts - every_s,
                )
            )
            .order_by(nodes_t.c.name)
        ).all()
    return [(_pinned(row), row.last_seq) for row in rows]
