"""Database leases: a named job runs on one replica at a time across processes sharing a database.

A lease row (job_id, holder, expires_ms) is taken with one atomic upsert that only succeeds when the
row is absent, already ours, or expired. A replica that dies simply stops renewing; another takes
over once the lease expires.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import write_transaction
from node.db.dialects import dialect_insert

_metadata = sa.MetaData()
leases = sa.Table(
    "scheduler_leases",
    _metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("acquired_ms", sa.BigInteger, nullable=False),
    sa.Column("expires_ms", sa.BigInteger, nullable=False),
)


def try_acquire(engine: Engine, job_id: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
    """Take or renew the lease on `job_id` for `holder` until now + ttl; False if another holds it."""
    values = dialect_insert(engine, leases).values(
        job_id=job_id, holder=holder, acquired_ms=now_ms, expires_ms=now_ms + ttl_ms
    )
    stmt = values.on_conflict_do_update(
        index_elements=[leases.c.job_id],
        set_={"holder": holder, "acquired_ms": now_ms, "expires_ms": now_ms + ttl_ms},
        where=sa.or_(leases.c.holder == holder, leases.c.expires_ms < now_ms),
    ).returning(leases.c.job_id)
    with write_transaction(engine) as conn:
        # RETURNING, not rowcount: drivers need not report rowcount for INSERT ... ON CONFLICT.
        return conn.execute(stmt).first() is not None


def release_all(engine: Engine, holder: str) -> int:
    """Give up every lease `holder` has (on clean shutdown), so another replica can take over at once."""
    with write_transaction(engine) as conn:
        return conn.execute(sa.delete(leases).where(leases.c.holder == holder)).rowcount


def holder_of(engine: Engine, job_id: str, now_ms: int) -> str | None:
    """Who holds an unexpired lease on `job_id`, if anyone."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(leases.c.holder).where(leases.c.job_id == job_id, leases.c.expires_ms >= now_ms)
        ).first()
    return None if row is None else str(row.holder)


def release(engine: Engine, job_id: str, holder: str) -> bool:
    """Give up `holder`'s lease on `job_id` (True if it held it), so another replica may take it at once."""
    with write_transaction(engine) as conn:
        gone = conn.execute(sa.delete(leases).where(leases.c.job_id == job_id, leases.c.holder == holder))
        return gone.rowcount == 1
