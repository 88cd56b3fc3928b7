"""Pinned partners and their agreements: list, get, add, remove, and the config's partners."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dbprep import columns
from federation.errors import ConflictError, NotFoundError
from federation.partners import Agreement, Partner
from federation.store.db import writing
from federation.tables import (
    partners_t,
    peer_keys_t,
    received_t,
    relay_cursors_t,
    relayed_t,
    sessions_t,
    sync_t,
)

# Partners by the stored text of their row: read (and checked) on every signed request and every
# order, and immutable, so a row read before is not parsed and checked again.
_known: dict[tuple[str, str, str, str, str], Partner] = {}
_MAX_KNOWN = 1024


def partner_from_row(row: Any) -> Partner:
    """A partner as stored in a `fed_partners` row (a SQLAlchemy row, or a dict by column name)."""
    values = columns(row)
    stored = tuple(values[name] for name in ("name", "urls_json", "public_key", "agreement_json", "source"))
    partner = _known.get(stored)
    if partner is None:
        name, urls_json, public_key, agreement_json, source = stored
        partner = Partner(
            name,
            tuple(json.loads(urls_json)),
            public_key,
            Agreement.from_json(json.loads(agreement_json)),
            source,
        )
        if len(_known) >= _MAX_KNOWN:
            _known.clear()
        _known[stored] = partner
    return partner


def _partner_values(partner: Partner) -> dict[str, Any]:
    return {
        "urls_json": json.dumps(list(partner.urls)),
        "public_key": partner.public_key,
        "agreement_json": json.dumps(partner.agreement.to_json(), sort_keys=True),
        "source": partner.source,
    }


def list_partners(engine: Engine) -> list[Partner]:
    """Every trusted partner, by name."""
    with engine.connect() as conn:
        return [
            partner_from_row(row) for row in conn.execute(sa.select(partners_t).order_by(partners_t.c.name))
        ]


# Read at each step of an order for a partner's offer: built once with a bind parameter.
_PARTNER = sa.select(partners_t).where(partners_t.c.name == sa.bindparam("p_name"))


def get_partner(engine: Engine, name: str) -> Partner | None:
    """The partner called `name`, or None."""
    with engine.connect() as conn:
        return get_partner_in(conn, name)


def get_partner_in(conn: Connection, name: str) -> Partner | None:
    """`get_partner` on a connection the caller holds (read with other things in one trip)."""
    row = conn.execute(_PARTNER, {"p_name": name}).first()
    return partner_from_row(row) if row is not None else None


def add_partner(engine: Engine, partner: Partner, now_ts: int, replace: bool = False) -> None:
    """Pin a new partner; ConflictError if the name is taken (unless `replace`)."""
    with writing(engine) as conn:
        exists = conn.execute(sa.select(partners_t.c.source).where(partners_t.c.name == partner.name)).first()
        if exists is not None and not replace:
            raise ConflictError(f"partner {partner.name!r} already exists; remove it first")
        if exists is not None:
            conn.execute(
                partners_t.update().where(partners_t.c.name == partner.name).values(_partner_values(partner))
            )
        else:
            conn.execute(
                partners_t.insert().values(name=partner.name, added_ts=now_ts, **_partner_values(partner))
            )


def remove_partner(engine: Engine, name: str) -> None:
    """Forget a partner added from the CLI (with its keys, session and catalog)."""
    with writing(engine) as conn:
        row = conn.execute(sa.select(partners_t.c.source).where(partners_t.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no partner called {name!r}")
        if row.source == "config":
            raise ConflictError(f"partner {name!r} comes from the config file; remove it there")
        _forget(conn, name)


def _forget(conn: sa.Connection, name: str) -> None:
    for table in (peer_keys_t, sessions_t, received_t, sync_t):
        conn.execute(table.delete().where(table.c.partner == name))
    for table in (relayed_t, relay_cursors_t):
        conn.execute(table.delete().where(table.c.via == name))
    conn.execute(partners_t.delete().where(partners_t.c.name == name))


def sync_config_partners(engine: Engine, partners: Iterable[Partner], now_ts: int) -> None:
    """Make the `config` partners in the database equal `partners` (CLI-added ones are kept)."""
    wanted = {p.name: p for p in partners}
    with writing(engine) as conn:
        rows = {row.name: row for row in conn.execute(sa.select(partners_t))}
        for name, row in rows.items():
            if row.source == "config" and name not in wanted:
                _forget(conn, name)
        for name, partner in wanted.items():
            if name in rows:
                if rows[name].public_key != partner.public_key:
                    conn.execute(peer_keys_t.delete().where(peer_keys_t.c.partner == name))
                conn.execute(
                    partners_t.update().where(partners_t.c.name == name).values(_partner_values(partner))
                )
            else:
                conn.execute(
                    partners_t.insert().values(name=name, added_ts=now_ts, **_partner_values(partner))
                )
