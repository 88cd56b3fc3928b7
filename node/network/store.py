"""The stored network view (migration node_0014): one row, written by the refresh job, read by every
replica that matches demands."""

from __future__ import annotations

import json

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import write_transaction
from node.network.view import NetworkView, from_view

_md = sa.MetaData()
network_views_t = sa.Table(
    "network_views",
    _md,
    sa.Column("id", sa.String(20), primary_key=True),
    sa.Column("view", sa.Text),
    sa.Column("refreshed_ts", sa.BigInteger),
)
_CURRENT = "current"


def save_view(engine: Engine, view: NetworkView) -> None:
    """Store `view` as the current one."""
    text = json.dumps(view.view(), sort_keys=True)
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(network_views_t).where(network_views_t.c.id == _CURRENT))
        conn.execute(
            sa.insert(network_views_t).values(id=_CURRENT, view=text, refreshed_ts=view.refreshed_ts)
        )


def load_view_text(engine: Engine) -> str | None:
    """The current view as stored (JSON text), None before the first refresh: comparing it with
    the text read before tells whether the view changed without parsing it."""
    with engine.connect() as conn:
        text = conn.execute(
            sa.select(network_views_t.c.view).where(network_views_t.c.id == _CURRENT)
        ).scalar_one_or_none()
    return None if text is None else str(text)


def view_from_text(text: str) -> NetworkView:
    """A view from its stored text."""
    return from_view(json.loads(text))


def load_view(engine: Engine) -> NetworkView | None:
    """The current view, None before the first refresh."""
    text = load_view_text(engine)
    return None if text is None else view_from_text(text)
