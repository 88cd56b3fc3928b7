"""A batch's rows as the one JSONB parameter each of PostgreSQL's write statements takes
(ledger/store/statements.py; UTF-8 JSON, sent as it is by ledger/store/pgwire.py), built the same way by the reading write path (`ledger.store.writer`)
and the one-round-trip one (`ledger.store.speculative`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from ledger.records import Transfer
from ledger.store.cache import WriterCache


def balance_rows(cache: WriterCache, touched: Iterable[str]) -> bytes:
    """`UPDATE_BALANCES_PG`'s rows: each touched account's (balance row key, four totals) from the
    cache (the statement orders them by key, the order PostgreSQL locks them in)."""
    accounts, nums = cache.accounts, cache.nums
    return orjson.dumps([(nums[a], *accounts[a].balance.as_tuple()) for a in touched])


def transfer_rows(created: Sequence[Transfer]) -> bytes:
    """`INSERT_TRANSFERS_PG`'s rows: every column of each new transfer, in order."""
    return orjson.dumps([tuple(transfer) for transfer in created])
