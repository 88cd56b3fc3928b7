"""Reconciliation against the database: our summary for a partner, recorded discrepancies, corrections.

Corrections never change a stored transfer: they are new transfers (code CORRECTION_CODE, the
trade's id) that move the difference, and the discrepancy records which transfer corrected it.
Recording is idempotent: the same discrepancy found again (a replayed or duplicated summary, a
second run) is stored once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

from ledger.errors import ConflictError, NotFoundError, RequestError
from ledger.holds import HoldState
from ledger.reconcile import (
    DEFAULT_MARGIN_MS,
    Discrepancy,
    DiscrepancyKind,
    Summary,
    Window,
    build_summary,
    diff_summaries,
    parse_summary,
    render_report,
    summary_digest,
    trade_entries,
)
from ledger.records import (
    CORRECTION_CODE,
    AccountKind,
    Transfer,
    TransferKind,
    TransferRequest,
    TransferResult,
)
from ledger.store.db import Cursor, now_ms, select_in, transfer_from_row, with_retries, write_transaction
from ledger.store.reads import seq_at_time
from ledger.store.schema import accounts, discrepancies, reconciliations, transfers
from ledger.store.writer import hold_states, submit


@dataclass(frozen=True, slots=True)
class StoredDiscrepancy:
    """A discrepancy as recorded, with the transfer that corrected it (if any)."""

    id: int
    partner: str
    window: Window
    trade_id: str
    kind: str
    ours: dict[str, Any] | None
    theirs: dict[str, Any] | None
    found_ms: int
    correction_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "partner": self.partner,
            "window": {"from_ms": self.window.from_ms, "to_ms": self.window.to_ms},
            "trade_id": self.trade_id,
            "kind": self.kind,
            "ours": self.ours,
            "theirs": self.theirs,
            "found_ms": self.found_ms,
            "correction_id": self.correction_id,
        }


def partner_accounts(conn: Connection, partner: str) -> set[str]:
    """Ids of our accounts that stand for `partner`."""
    query = sa.select(accounts.c.id).where(
        accounts.c.kind == AccountKind.PARTNER.value, accounts.c.partner == partner
    )
    return {row.id for row in conn.execute(query)}


def summary_for_partner(
    engine: Engine,
    issuer: str,
    partner: str,
    window: Window,
    *,
    margin_ms: int = DEFAULT_MARGIN_MS,
    now: int | None = None,
) -> dict[str, Any]:
    """Our unsigned summary of the trades with `partner` first recorded in the (widened) window."""
    with engine.connect() as conn:
        mine = partner_accounts(conn, partner)
        touches = transfers.c.partner == partner
        if mine:
            touches = (
                touches
                | transfers.c.debit_account.in_(sorted(mine))
                | transfers.c.credit_account.in_(sorted(mine))
            )
        trade_ids = [
            row.trade_id
            for row in conn.execute(
                sa.select(transfers.c.trade_id)
                .distinct()
                .where(
                    transfers.c.trade_id.is_not(None),
                    # The log's times never go back: the window is a range of sequence numbers.
                    transfers.c.seq >= seq_at_time(conn, window.from_ms - margin_ms),
                    transfers.c.seq < seq_at_time(conn, window.to_ms + margin_ms),
                    touches,
                )
            )
        ]
        legs = [
            transfer_from_row(row)
            for row in select_in(
                conn, lambda part: sa.select(transfers).where(transfers.c.trade_id.in_(part)), trade_ids
            )
        ]
        holds = [leg.id for leg in legs if leg.kind is TransferKind.PENDING]
        states = hold_states(Cursor(conn), holds)
        still_open = {pending_id for pending_id, state in states.items() if state is HoldState.PENDING}
    entries = trade_entries(legs, mine, still_open)
    return build_summary(issuer, partner, window, margin_ms, now_ms() if now is None else now, entries)


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # loaded only where a PostgreSQL URL is used

        return postgresql.insert(table)
    return sqlite.insert(table)


def record_reconciliation(
    engine: Engine,
    ours_document: dict[str, Any],
    theirs_document: dict[str, Any],
    ours: Summary,
    theirs: Summary,
    found: list[Discrepancy],
    *,
    now: int | None = None,
) -> int:
    """Record a reconciliation run and its discrepancies; return how many discrepancies are new."""
    found_ms = now_ms() if now is None else now

    def attempt() -> int:
        with write_transaction(engine) as conn:
            rows = [
                {
                    "partner": ours.partner,
                    "window_from_ms": ours.window.from_ms,
                    "window_to_ms": ours.window.to_ms,
                    "trade_id": d.trade_id,
                    "kind": str(d.kind),
                    "ours": None if d.ours is None else json.dumps(d.ours.to_dict(), sort_keys=True),
                    "theirs": None if d.theirs is None else json.dumps(d.theirs.to_dict(), sort_keys=True),
                    "found_ms": found_ms,
                    "correction_id": None,
                }
                for d in found
            ]
            new = 0
            for row in rows:
                statement = _insert(conn, discrepancies).values(**row).on_conflict_do_nothing()
                # RETURNING yields a row only when one was inserted (rowcount is not reliable here).
                new += len(conn.execute(statement.returning(discrepancies.c.id)).all())
            conn.execute(
                sa.insert(reconciliations).values(
                    partner=ours.partner,
                    window_from_ms=ours.window.from_ms,
                    window_to_ms=ours.window.to_ms,
                    ran_ms=found_ms,
                    our_trades=len(ours.trades),
                    their_trades=len(theirs.trades),
                    discrepancies=len(found),
                    our_summary_sha256=summary_digest(ours_document),
                    their_summary_sha256=summary_digest(theirs_document),
                )
            )
            return new

    return with_retries(attempt, "recording a reconciliation")


def record_dispute(
    engine: Engine,
    partner: str,
    trade_id: str,
    kind: DiscrepancyKind,
    ours: dict[str, Any],
    theirs: dict[str, Any],
    window: Window,
    *,
    now: int | None = None,
) -> bool:
    """Record a discrepancy one side found on its own (a usage record it disputes), outside a summary
    exchange, so reconciliation lists it with the others; idempotent (True when it is new)."""
    found_ms = now_ms() if now is None else now

    def attempt() -> bool:
        with write_transaction(engine) as conn:
            row = {
                "partner": partner,
                "window_from_ms": window.from_ms,
                "window_to_ms": window.to_ms,
                "trade_id": trade_id,
                "kind": str(kind),
                "ours": json.dumps(ours, sort_keys=True),
                "theirs": json.dumps(theirs, sort_keys=True),
                "found_ms": found_ms,
                "correction_id": None,
            }
            statement = _insert(conn, discrepancies).values(**row).on_conflict_do_nothing()
            return len(conn.execute(statement.returning(discrepancies.c.id)).all()) > 0

    return with_retries(attempt, "recording a dispute")


def _stored(row: Any) -> StoredDiscrepancy:
    m = row._mapping
    return StoredDiscrepancy(
        id=m["id"],
        partner=m["partner"],
        window=Window(m["window_from_ms"], m["window_to_ms"]),
        trade_id=m["trade_id"],
        kind=m["kind"],
        ours=None if m["ours"] is None else json.loads(m["ours"]),
        theirs=None if m["theirs"] is None else json.loads(m["theirs"]),
        found_ms=m["found_ms"],
        correction_id=m["correction_id"],
    )


def list_discrepancies(
    engine: Engine, *, partner: str | None = None, open_only: bool = False
) -> list[StoredDiscrepancy]:
    """Recorded discrepancies, oldest first; only one partner's, or only uncorrected ones, if asked."""
    query = sa.select(discrepancies).order_by(discrepancies.c.id)
    if partner is not None:
        query = query.where(discrepancies.c.partner == partner)
    if open_only:
        query = query.where(discrepancies.c.correction_id.is_(None))
    with engine.connect() as conn:
        return [_stored(row) for row in conn.execute(query)]


def list_reconciliations(
    engine: Engine, *, partner: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Recorded reconciliation runs, newest first, at most `limit`; only one partner's, if asked."""
    query = sa.select(reconciliations).order_by(reconciliations.c.id.desc()).limit(limit)
    if partner is not None:
        query = query.where(reconciliations.c.partner == partner)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        row["window"] = {"from_ms": row.pop("window_from_ms"), "to_ms": row.pop("window_to_ms")}
    return rows


def correct_discrepancy(
    engine: Engine, discrepancy_id: int, request: TransferRequest, *, now: int | None = None
) -> TransferResult:
    """Submit a correcting transfer for a discrepancy and mark the discrepancy corrected by it."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(discrepancies).where(discrepancies.c.id == discrepancy_id)).first()
    if row is None:
        raise NotFoundError(f"no discrepancy {discrepancy_id}")
    found = _stored(row)
    if found.correction_id is not None and found.correction_id != request.id:
        raise ConflictError(f"discrepancy {discrepancy_id} was already corrected by {found.correction_id!r}")
    if request.trade_id != found.trade_id or request.code != CORRECTION_CODE:
        raise RequestError(
            f"a correction must carry trade_id {found.trade_id!r} and code {CORRECTION_CODE}",
            field="trade_id",
        )
    [result] = submit(engine, [request], now=now)
    if result.ok:
        with write_transaction(engine) as conn:
            conn.execute(
                sa.update(discrepancies)
                .where(discrepancies.c.id == discrepancy_id, discrepancies.c.correction_id.is_(None))
                .values(correction_id=request.id)
            )
    return result


def transfers_of_trade(engine: Engine, trade_id: str) -> list[Transfer]:
    """Every leg recorded under `trade_id`, in sequence order."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(transfers).where(transfers.c.trade_id == trade_id).order_by(transfers.c.seq)
        )
        return [transfer_from_row(row) for row in rows]


@dataclass(frozen=True, slots=True)
class ReconcileOutcome:
    """One reconciliation run: both summaries as compared, what differs, how much of it is new, the report."""

    ours_document: dict[str, Any]
    theirs_document: dict[str, Any]
    discrepancies: list[Discrepancy]
    new: int
    report: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "partner": self.ours_document["partner"],
            "window": self.ours_document["window"],
            "our_trades": self.ours_document["count"],
            "their_trades": self.theirs_document.get("count"),
            "discrepancies": [d.to_dict() for d in self.discrepancies],
            "new": self.new,
        }


def reconcile_with_partner(
    engine: Engine,
    issuer: str,
    partner: str,
    window: Window,
    exchange: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    margin_ms: int = DEFAULT_MARGIN_MS,
    max_skew_ms: int = DEFAULT_MARGIN_MS,
    now: int | None = None,
) -> ReconcileOutcome:
    """Build our summary, hand it to `exchange` (which signs it, sends it to the partner, and returns the
    partner's summary once its signature checks out), diff the two by trade id and record the result.

    If `exchange` fails (partner offline, bad signature) nothing is recorded and the error propagates."""
    current = now_ms() if now is None else now
    ours_document = summary_for_partner(engine, issuer, partner, window, margin_ms=margin_ms, now=current)
    theirs_document = exchange(ours_document)
    ours = parse_summary(ours_document)
    theirs = parse_summary(theirs_document, now_ms=current, max_skew_ms=max_skew_ms)
    found = diff_summaries(ours, theirs)
    new = record_reconciliation(engine, ours_document, theirs_document, ours, theirs, found, now=current)
    return ReconcileOutcome(ours_document, theirs_document, found, new, render_report(ours, theirs, found))
