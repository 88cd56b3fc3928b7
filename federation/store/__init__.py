"""Queries over the federation tables (defined in `federation.tables`, created by
migrations/versions/), one module per concern:

- `partners`: pinned partners and their agreements;
- `keys`: the deny-list and the keys learned from partners' key documents;
- `sessions`: login challenges issued here, and this node's sessions at partners;
- `catalogs`: catalogs issued and received, and the events of receiving them;
- `peers`: sync state per partner, discovered nodes, stored answers to trade requests;
- `relay`: the star case: an aggregator's feed of re-publishable catalogs; a receiver's trusted
  issuers, relayed catalogs and feed cursors;
- `db`: `writing`, the write transaction every write runs in (also used by `claims` and `nonces`).

Synchronous SQLAlchemy Core; the aiohttp edges call these through `asyncio.to_thread`. Writes run
in one write transaction each (`cpnode_write` makes SQLite take its lock up front), so nothing is
ever half-applied. Everything is re-exported here: callers write `store.get_partner(...)`.
"""

from __future__ import annotations

from federation.store.catalogs import (
    IssuedCatalog,
    catalog_events,
    insert_issued,
    latest_issued,
    latest_issued_head,
    received_catalogs,
    received_head,
    record_event,
    store_received,
)
from federation.store.db import writing
from federation.store.keys import (
    PeerView,
    call_view,
    call_view_in,
    denied_keys,
    deny_key,
    list_denied,
    merge_peer_keys,
    peer_keys,
    peer_view,
)
from federation.store.partners import (
    add_partner,
    get_partner,
    get_partner_in,
    list_partners,
    remove_partner,
    sync_config_partners,
)
from federation.store.peers import (
    get_trade,
    list_discovered,
    put_sync_state,
    put_trade,
    sync_states,
    upsert_discovered,
)
from federation.store.relay import (
    add_issuer,
    get_issuer,
    list_issuers,
    relay_cursor,
    relay_feed,
    relay_position,
    relayable_body,
    relayed_catalogs,
    relayed_head,
    remove_issuer,
    set_relay_cursor,
    store_relayed,
    sync_config_issuers,
)
from federation.store.sessions import (
    StoredSession,
    consume_challenge,
    drop_session,
    get_session,
    load_challenge,
    save_session,
    store_challenge,
)

__all__ = [
    "IssuedCatalog",
    "PeerView",
    "StoredSession",
    "add_issuer",
    "add_partner",
    "call_view",
    "call_view_in",
    "catalog_events",
    "consume_challenge",
    "denied_keys",
    "deny_key",
    "drop_session",
    "get_issuer",
    "get_partner",
    "get_partner_in",
    "get_session",
    "get_trade",
    "insert_issued",
    "latest_issued",
    "latest_issued_head",
    "list_denied",
    "list_discovered",
    "list_issuers",
    "list_partners",
    "load_challenge",
    "merge_peer_keys",
    "peer_keys",
    "peer_view",
    "put_sync_state",
    "put_trade",
    "received_catalogs",
    "received_head",
    "record_event",
    "relay_cursor",
    "relay_feed",
    "relay_position",
    "relayable_body",
    "relayed_catalogs",
    "relayed_head",
    "remove_issuer",
    "remove_partner",
    "save_session",
    "set_relay_cursor",
    "store_challenge",
    "store_received",
    "store_relayed",
    "sync_config_issuers",
    "sync_config_partners",
    "sync_states",
    "upsert_discovered",
    "writing",
]
