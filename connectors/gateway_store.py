"""Compute gateways in the database (the SQL edge): registration codes used once, standing tokens.

Every replica answers the registration route, so single use is decided by the database: using a
code is one INSERT of its id, and the primary key refuses a second one on any replica. A gateway's
standing token (what it registers with after a restart) is stored as its SHA-256 only.
"""

from __future__ import annotations

import hashlib
import hmac

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from connectors.sqlstore import EngineStore

_META = sa.MetaData()
CODES = sa.Table(
    "connector_gateway_codes",
    _META,
    sa.Column("code_id", sa.String(64), primary_key=True),
    sa.Column("pool", sa.String(63)),
    sa.Column("used_ms", sa.BigInteger),
)
GATEWAYS = sa.Table(
    "connector_gateways",
    _META,
    sa.Column("pool", sa.String(63), primary_key=True),
    sa.Column("token_sha256", sa.String(64)),
    sa.Column("registered_ms", sa.BigInteger),
)


def token_sha256(token: str) -> str:
    """The SHA-256 (hex) under which a gateway token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class GatewayStore(EngineStore):
    """Reads and writes the gateway tables on a node's engine."""

    def use_code(self, code_id: str, pool: str, now_ms: int) -> bool:
        """Mark a code used; False if it already was (on this replica or any other)."""
        try:
            with self._write() as conn, conn.begin():
                conn.execute(sa.insert(CODES).values(code_id=code_id, pool=pool, used_ms=now_ms))
        except IntegrityError:
            return False
        return True

    def release_code(self, code_id: str) -> None:
        """Make a code usable again (its registration did not go through)."""
        with self._write() as conn, conn.begin():
            conn.execute(sa.delete(CODES).where(CODES.c.code_id == code_id))

    def set_token(self, pool: str, token: str, now_ms: int) -> None:
        """Give the gateway of `pool` a new standing token (replacing any older one)."""
        values = {"pool": pool, "token_sha256": token_sha256(token), "registered_ms": now_ms}
        stmt = self._insert(GATEWAYS).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=[GATEWAYS.c.pool], set_=values)
        with self._write() as conn, conn.begin():
            conn.execute(stmt)

    def token_matches(self, pool: str, token: str) -> bool:
        """Whether `token` is the standing token of the gateway of `pool`."""
        with self.engine.connect() as conn:
            stored = conn.execute(sa.select(GATEWAYS.c.token_sha256).where(GATEWAYS.c.pool == pool)).scalar()
        return stored is not None and hmac.compare_digest(stored, token_sha256(token))

    def forget(self, pool: str) -> bool:
        """Drop the gateway of `pool` (its token no longer registers); True if there was one."""
        with self._write() as conn, conn.begin():
            return conn.execute(sa.delete(GATEWAYS).where(GATEWAYS.c.pool == pool)).rowcount > 0
