"""Claims on trades in progress, shared by every replica of a node through its database.

A partner may have at most `max_trades_in_flight` trades running at this node, counted over all
replicas, and one trade id runs its handler at most once at a time. A claim row in
`fed_trade_claims` (migration federation_0002) marks a trade as running; it carries an expiry that
its holder renews while the handler runs, so a replica that crashes mid-trade leaves a claim that
lapses after `trade_claim_ttl_s` instead of blocking the partner for ever. The answer and the end
of the claim are written in one transaction.

The life of one (partner, trade id) at this node, as one table (anything absent is refused)::

    free        --claim-->   in_progress   (below the partner's limit; else 429 rate_limited)
    lapsed      --claim-->   in_progress   (its holder stopped renewing: the trade may be retried)
    in_progress --claim-->   refused       (429 trade_in_progress: another request runs it now)
    in_progress --renew-->   in_progress
    in_progress --finish-->  answered      (the answer is stored and the claim removed)
    in_progress --release--> free          (the handler failed; the trade may be retried)
    answered    --claim-->   answered      (the stored answer is returned; nothing runs)
    free/lapsed --answer-->  answered      (a claim whose write answered the trade itself,
                                            `Answered`: stored with it, the handler never runs)

A handler whose claim lapsed (its replica lost the database for longer than the claim lasts) may
run a second time on another replica; the first stored answer is the one every caller gets, and
the node's trade handler must be idempotent on the trade id (ledger transfer ids are).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dbprep import Prepared
from federation.claim_states import (
    Answered,
    AnsweringWrite,
    ClaimState,
    ClaimWrite,
    transition,
)
from federation.errors import AuthError, ConflictError, RateLimitedError
from federation.nonces import PendingNonce, claim_nonce_in
from federation.store.db import writing
from federation.tables import claims_t, partners_t, trades_t

# The statements of the claim path, built once with bind parameters (`p_*`) so each call reuses
# SQLAlchemy's compiled form instead of building and keying a new statement; the ones every batch
# runs are rendered once and run on the driver's cursor (dbprep).
_P: sa.BindParameter[str] = sa.bindparam("p_partner")
_T: sa.BindParameter[str] = sa.bindparam("p_trade")
_H: sa.BindParameter[str] = sa.bindparam("p_holder")
_NOW: sa.BindParameter[int] = sa.bindparam("p_now")
_LOCK_PARTNER = Prepared(
    sa.select(partners_t.c.name).where(partners_t.c.name == _P).with_for_update(key_share=True)
)
_ANSWER = Prepared(sa.select(trades_t).where(trades_t.c.partner == _P, trades_t.c.trade_id == _T))
_CLAIM = Prepared(sa.select(claims_t).where(claims_t.c.partner == _P, claims_t.c.trade_id == _T))
_RUNNING = Prepared(
    sa.select(sa.func.count())
    .select_from(claims_t)
    .where(claims_t.c.partner == _P, claims_t.c.expires_ts >= _NOW, claims_t.c.trade_id != _T)
)
_RETAKE = claims_t.update().where(claims_t.c.partner == _P, claims_t.c.trade_id == _T)
_INSERT_CLAIM = Prepared(claims_t.insert())
_DROP_OWN = claims_t.delete().where(
    claims_t.c.partner == _P, claims_t.c.trade_id == _T, claims_t.c.holder == _H
)
_DROP = claims_t.delete().where(claims_t.c.partner == _P, claims_t.c.trade_id == _T)
_ANSWER_STATUS = sa.select(trades_t.c.status, trades_t.c.response).where(
    trades_t.c.partner == _P, trades_t.c.trade_id == _T
)
_INSERT_ANSWER = Prepared(trades_t.insert())
_IDS: sa.BindParameter[list[str]] = sa.bindparam("p_ids", expanding=True)
_ANSWERS = Prepared(sa.select(trades_t).where(trades_t.c.partner == _P, trades_t.c.trade_id.in_(_IDS)))
_CLAIMS = Prepared(sa.select(claims_t).where(claims_t.c.partner == _P, claims_t.c.trade_id.in_(_IDS)))
Row = dict[str, Any]  # a stored answer or claim, by column (dbprep)
_RUNNING_ALL = Prepared(
    sa.select(sa.func.count())
    .select_from(claims_t)
    .where(claims_t.c.partner == _P, claims_t.c.expires_ts >= _NOW)
)


def _state(conn: Connection, partner: str, trade_id: str, now_ts: int) -> tuple[ClaimState, Row | None]:
    """The trade's state and the row behind it (stored answer or claim)."""
    keys = {"p_partner": partner, "p_trade": trade_id}
    return _state_of(_ANSWER.first(conn, keys), _CLAIM.first(conn, keys), now_ts)


def _state_of(answer: Row | None, claim: Row | None, now_ts: int) -> tuple[ClaimState, Row | None]:
    """A trade's state from its stored answer and claim rows (None: none)."""
    if answer is not None:
        return "answered", answer
    if claim is None:
        return "free", None
    return ("in_progress" if claim["expires_ts"] >= now_ts else "lapsed"), claim


@dataclass
class _Known:
    """A batch's trades as read at once before any is claimed (their ids all differ): each one's
    state and row, and how many of the partner's claims are in progress (kept up to date as the
    batch takes claims), so a trade needs no reads of its own."""

    states: dict[str, tuple[ClaimState, Row | None]]
    running: int

    @classmethod
    def read(cls, conn: Connection, partner: str, trade_ids: list[str], now_ts: int) -> _Known:
        """Read the batch's answers, claims and the running count, three statements in all."""
        params = {"p_partner": partner, "p_ids": trade_ids}
        answers = {row["trade_id"]: row for row in _ANSWERS.rows(conn, params)}
        claims = {row["trade_id"]: row for row in _CLAIMS.rows(conn, params)}
        states = {t: _state_of(answers.get(t), claims.get(t), now_ts) for t in trade_ids}
        running = _RUNNING_ALL.scalar(conn, {"p_partner": partner, "p_now": now_ts})
        return cls(states, int(running))


def claim_trade(
    engine: Engine,
    partner: str,
    trade_id: str,
    request_sha256: str,
    holder: str,
    now_ts: int,
    ttl_s: int,
    limit: int,
    nonce: PendingNonce | None = None,
    write: ClaimWrite | None = None,
) -> dict[str, Any] | None:
    """Claim a trade for `holder` until now + `ttl_s`; return the stored answer instead if it has one.

    `nonce`: the request's signature nonce, claimed in the same transaction (one write instead of
    two); AuthError `replayed` when it was used before, and then nothing is written.
    `write`: run in the same transaction once the claim is taken (not when a stored answer or a
    refusal is returned: the transaction then writes nothing of it). When it returns `Answered`,
    that answer is stored instead of the claim (`answer`: the trade is done) and returned, with
    the `Answered` under "answered"; an `AnsweringWrite` makes the transaction durable.
    Raises RateLimitedError (429) when the partner is at its limit or the trade runs elsewhere now,
    ConflictError (409) when the trade id was used with other content; the nonce is not recorded
    then (the transaction rolls back), so the caller claims it on its own.
    """
    # Lazy: the trade's answer is stored by `finish_trade`, durably, before it is sent; a claim a
    # machine crash undoes was never told to anyone and is taken again by the retry. Durable when
    # the write may store the answer here.
    with writing(engine, lazy=not isinstance(write, AnsweringWrite)) as conn:
        _lock_partner(conn, partner, nonce)
        return _claim_in(conn, partner, trade_id, request_sha256, holder, now_ts, ttl_s, limit, write)


@dataclass(frozen=True)
class BatchClaim:
    """One trade of a batch to claim (`claim_trades`): its id, request hash and claim write."""

    trade_id: str
    request_sha256: str
    write: ClaimWrite | None = None


def claim_trades(
    engine: Engine,
    partner: str,
    batch: Sequence[BatchClaim],
    holder: str,
    now_ts: int,
    ttl_s: int,
    limit: int,
    nonce: PendingNonce | None = None,
) -> list[dict[str, Any] | Exception | None]:
    """Claim several trades of one partner in one write transaction, each as `claim_trade` would
    (one result per item: the stored answer, None for a claim taken, or the error refusing it).

    One refused, or one whose write fails, is rolled back alone and never touches the others: the
    batch is claimed without savepoints, and again with a savepoint per trade once one fails.
    Durable when any write may store its answer here.
    `nonce`: the batch request's signature nonce, claimed first in the same transaction; AuthError
    `replayed` when it was used before, and then nothing is written."""
    args = (engine, partner, batch, holder, now_ts, ttl_s, limit, nonce)
    try:  # as a rule every trade is claimed: no savepoints (two statements a trade) unless one is not
        return _claim_together(*args, isolated=False)
    except _Refused:  # rolled back whole: again, each trade in a savepoint
        return _claim_together(*args, isolated=True)


class _Refused(Exception):
    """A trade of a batch claimed without savepoints was refused or failed: the whole transaction
    rolled back."""


def _claim_together(
    engine: Engine,
    partner: str,
    batch: Sequence[BatchClaim],
    holder: str,
    now_ts: int,
    ttl_s: int,
    limit: int,
    nonce: PendingNonce | None,
    isolated: bool,
) -> list[dict[str, Any] | Exception | None]:
    """`claim_trades`' transaction: with `isolated`, each trade in a savepoint and its error its
    result; else the first trade's error rolls back the whole transaction and raises `_Refused`."""
    results: list[dict[str, Any] | Exception | None] = []
    lazy = not any(isinstance(item.write, AnsweringWrite) for item in batch)
    with writing(engine, lazy=lazy) as conn:
        _lock_partner(conn, partner, nonce)
        ids = [item.trade_id for item in batch]
        # Plainly, each trade read with the others at once, unless an id comes twice (the second
        # must see what the first did).
        known = None if isolated or len(set(ids)) < len(ids) else _Known.read(conn, partner, ids, now_ts)
        if known is not None:
            try:
                together = _claim_at_once(conn, partner, batch, holder, now_ts, ttl_s, limit, known)
            except Exception as exc:  # a write failed: rolled back whole, then trade by trade
                raise _Refused from exc
            if together is not None:
                return together
        for item in batch:
            claim = functools.partial(
                _claim_in,
                conn,
                partner,
                item.trade_id,
                item.request_sha256,
                holder,
                now_ts,
                ttl_s,
                limit,
                item.write,
                known,
            )
            if not isolated:
                try:
                    results.append(claim())
                except Exception as exc:
                    raise _Refused from exc
                continue
            try:
                with conn.begin_nested():
                    results.append(claim())
            except Exception as exc:  # this trade's refusal or failure; the others go on
                results.append(exc)
    return results


def _claim_at_once(
    conn: Connection,
    partner: str,
    batch: Sequence[BatchClaim],
    holder: str,
    now_ts: int,
    ttl_s: int,
    limit: int,
    known: _Known,
) -> list[dict[str, Any] | Exception | None] | None:
    """The batch claimed as `_claim_in` would claim its trades one after another, with one
    `write_together` of their writes and one insert per kind of row, when nothing can refuse a
    trade: each is answered already (with the same request), free or lapsed, all fit under the
    partner's limit, and their writes are of one `AnsweringWrite` kind (or none). None when that
    does not hold, before anything is written: the batch is then claimed trade by trade."""
    writes = [item.write for item in batch if item.write is not None]
    if not all(isinstance(write, AnsweringWrite) and type(write) is type(writes[0]) for write in writes):
        return None
    results: list[dict[str, Any] | Exception | None] = [None] * len(batch)
    todo: list[int] = []
    for index, item in enumerate(batch):
        state, row = known.states[item.trade_id]
        if row is not None and row["request_sha256"] != item.request_sha256:
            return None
        if state == "answered" and row is not None:
            results[index] = dict(row)
        elif state in ("free", "lapsed"):
            todo.append(index)
        else:
            return None
    if known.running + len(todo) > limit:
        return None
    chosen = [(index, w) for index in todo if isinstance(w := batch[index].write, AnsweringWrite)]
    together = type(chosen[0][1]).write_together(conn, [w for _, w in chosen]) if chosen else []
    written = dict(zip([index for index, _ in chosen], together, strict=True))
    answers: list[dict[str, Any]] = []
    taken: list[dict[str, Any]] = []
    for index in todo:
        item, (state, _) = batch[index], known.states[batch[index].trade_id]
        result, answer, claim = _written(
            conn,
            partner,
            item.trade_id,
            item.request_sha256,
            holder,
            now_ts,
            ttl_s,
            state,
            written.get(index),
        )
        results[index] = result
        answers += [answer] if answer is not None else []
        taken += [claim] if claim is not None else []
        if result is None:  # a claim taken counts for the trades after it
            known.running += 1
    _INSERT_ANSWER.many(conn, answers)
    _INSERT_CLAIM.many(conn, taken)
    return results


def _answer_row(
    partner: str, trade_id: str, request_sha256: str, status: int, response: bytes, now_ts: int
) -> dict[str, Any]:
    """A trade's stored answer, as its row."""
    return {
        "partner": partner,
        "trade_id": trade_id,
        "request_sha256": request_sha256,
        "status": status,
        "response": response,
        "created_ts": now_ts,
    }


def _lock_partner(conn: Connection, partner: str, nonce: PendingNonce | None) -> None:
    """Serialise claims of one partner: SQLite's BEGIN IMMEDIATE already does; on PostgreSQL a row
    lock on the partner (NO KEY UPDATE, so foreign-key checks elsewhere do not wait). Then claim
    the request's `nonce`, if any: AuthError `replayed` when it was used before."""
    if _LOCK_PARTNER.first(conn, {"p_partner": partner}) is None:
        raise AuthError(f"{partner!r} is not a partner of this node", code="unknown_partner")
    if nonce is not None and not claim_nonce_in(conn, nonce.kid, nonce.nonce, nonce.until_ts, nonce.now_ts):
        raise AuthError("nonce already used (replayed request)", code="replayed")


def _claim_in(
    conn: Connection,
    partner: str,
    trade_id: str,
    request_sha256: str,
    holder: str,
    now_ts: int,
    ttl_s: int,
    limit: int,
    write: ClaimWrite | None,
    known: _Known | None = None,
) -> dict[str, Any] | None:
    """The claim of `claim_trade` inside the caller's write transaction (partner locked); `known`:
    the trade's batch as read at once (no reads of its own then; a claim taken is counted there)."""
    state, row = _state(conn, partner, trade_id, now_ts) if known is None else known.states[trade_id]
    if row is not None and row["request_sha256"] != request_sha256:
        raise ConflictError(f"trade {trade_id!r} was already requested with different content")
    after = transition(state, "claim")
    if after == "answered" and row is not None:
        return dict(row)
    if after == "refused":
        raise RateLimitedError(f"trade {trade_id!r} is in progress; retry later", code="trade_in_progress")
    keys = {"p_partner": partner, "p_trade": trade_id}
    # With `known`, the trade's own claim is not in progress (refused above): its count is others'.
    running = _RUNNING.scalar(conn, {**keys, "p_now": now_ts}) if known is None else known.running
    if running >= limit:
        raise RateLimitedError(f"{partner} already has {running} trade(s) in progress here; retry later")
    written = None if write is None else write(conn)
    result, answer, claim = _written(
        conn, partner, trade_id, request_sha256, holder, now_ts, ttl_s, state, written
    )
    if answer is not None:
        _INSERT_ANSWER.many(conn, [answer])
    if claim is not None:
        _INSERT_CLAIM.many(conn, [claim])
    if result is None and known is not None:
        known.running += 1
    return result


def _written(
    conn: Connection,
    partner: str,
    trade_id: str,
    request_sha256: str,
    holder: str,
    now_ts: int,
    ttl_s: int,
    state: ClaimState,
    written: object,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]:
    """What a free or lapsed trade's write leads to: its result (the answer, or None for a claim
    taken), and the stored answer's row or the new claim's row for the caller to insert (a lapsed
    claim is ended or taken again here)."""
    keys = {"p_partner": partner, "p_trade": trade_id}
    if isinstance(written, Answered):
        transition(state, "answer")
        if state == "lapsed":  # the claim its holder stopped renewing ends with the answer
            conn.execute(_DROP, keys)
        answer = _answer_row(partner, trade_id, request_sha256, written.status, written.response, now_ts)
        return {"status": written.status, "response": written.response, "answered": written}, answer, None
    values = {"request_sha256": request_sha256, "holder": holder, "claimed_ts": now_ts}
    if state == "lapsed":
        conn.execute(_RETAKE, {**keys, "expires_ts": now_ts + ttl_s, **values})
        return None, None, None
    return None, None, {"partner": partner, "trade_id": trade_id, "expires_ts": now_ts + ttl_s, **values}


def _store_answer(
    conn: Connection,
    partner: str,
    trade_id: str,
    request_sha256: str,
    status: int,
    response: bytes,
    now_ts: int,
) -> None:
    _INSERT_ANSWER.many(conn, [_answer_row(partner, trade_id, request_sha256, status, response, now_ts)])


def renew_claim(engine: Engine, partner: str, trade_id: str, holder: str, until_ts: int) -> bool:
    """Extend `holder`'s claim to `until_ts`; False if the claim is no longer its own."""
    with writing(engine) as conn:
        done = conn.execute(
            claims_t.update()
            .where(
                claims_t.c.partner == partner,
                claims_t.c.trade_id == trade_id,
                claims_t.c.holder == holder,
            )
            .values(expires_ts=until_ts)
        ).rowcount
    return bool(done)


def finish_trade(
    engine: Engine,
    partner: str,
    trade_id: str,
    request_sha256: str,
    holder: str,
    status: int,
    response: bytes,
    now_ts: int,
    writes: Sequence[ClaimWrite] = (),
) -> tuple[int, bytes]:
    """Store the answer and end `holder`'s claim together; return the answer that stands (the first).
    `writes`: what the handler left to write with its answer, run first in the same transaction."""
    with writing(engine) as conn:
        keys = {"p_partner": partner, "p_trade": trade_id}
        conn.execute(_DROP_OWN, {**keys, "p_holder": holder})
        for write in writes:
            write(conn)
        stored = conn.execute(_ANSWER_STATUS, keys).first()
        if stored is not None:  # our claim lapsed and another replica answered first
            return int(stored.status), bytes(stored.response)
        _store_answer(conn, partner, trade_id, request_sha256, status, response, now_ts)
        return status, response


def release_claim(engine: Engine, partner: str, trade_id: str, holder: str) -> None:
    """Drop `holder`'s claim (its handler failed), so the trade may be retried at once."""
    with writing(engine) as conn:
        conn.execute(_DROP_OWN, {"p_partner": partner, "p_trade": trade_id, "p_holder": holder})


def in_progress(engine: Engine, partner: str, now_ts: int) -> list[str]:
    """Trade ids of `partner` that hold an unexpired claim, sorted."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(claims_t.c.trade_id)
            .where(claims_t.c.partner == partner, claims_t.c.expires_ts >= now_ts)
            .order_by(claims_t.c.trade_id)
        )
        return [str(row.trade_id) for row in rows]


def purge_lapsed(engine: Engine, now_ts: int) -> int:
    """Delete claims that lapsed before `now_ts` (a lapsed claim counts for nothing); return how many."""
    with writing(engine) as conn:
        return int(conn.execute(claims_t.delete().where(claims_t.c.expires_ts < now_ts)).rowcount)
