"""What each engine's writer remembers between batches, and when it may trust it.

The head row carries a `version` that every write touching balances, holds or account state
increments. An engine keeps what its last committed batch knew, tagged with the version that batch
left behind: account balances with the integer key of each account's `ledger_balances` row, and
the holds it wrote or read with their states. A batch that finds the head (read under its lock) at
that same version knows nobody else wrote since, so the rules run on those dictionaries directly
instead of reading them again; any other version (another process or thread wrote), an error or a
rollback drops the cache. A writer takes the cache out while it works (`take`) and puts it back
only after its commit (`keep`), so two threads never share one; the one exception is a batch its
one-round-trip guard refused (nothing written): it puts back what the rules changed and returns
the cache (`put_back`, ledger/store/speculative.py), which the retry uses only at its version.

Account creation does not move the version (a new account has no balance anyone could have read),
so once it commits it adds the accounts it made to a cache of the version it saw: the first batch
that uses them need not read them back. Account specs never change, so they are kept apart from
any version.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from ledger.holds import HoldState
from ledger.records import AccountSpec, Balance, Transfer
from ledger.view import AccountState

MAX_CACHED_ACCOUNTS = 1_000_000
MAX_CACHED_TRANSFERS = 100_000


@dataclass
class WriterCache:
    """What an engine's last committed write knew, valid while the head's version is `version`."""

    version: int
    # The head that commit left, when this engine's writer made it (None: not known here): a
    # PostgreSQL batch then writes in one round trip, guarded by the head still being this.
    next_seq: int | None = None
    last_ts_ms: int = 0
    accounts: dict[str, AccountState] = field(default_factory=dict)
    nums: dict[str, int] = field(default_factory=dict)  # each account's ledger_balances key
    transfers: dict[str, Transfer] = field(default_factory=dict)  # stored holds, by id
    holds: dict[str, HoldState] = field(default_factory=dict)  # the state of each of them


_CACHES: weakref.WeakKeyDictionary[Engine, WriterCache] = weakref.WeakKeyDictionary()
_SPECS: weakref.WeakKeyDictionary[Engine, dict[str, AccountSpec]] = weakref.WeakKeyDictionary()


def specs_of(engine: Engine) -> dict[str, AccountSpec]:
    """The account specs this engine has read or written (they never change)."""
    return _SPECS.setdefault(engine, {})


def take(engine: Engine, version: int) -> WriterCache:
    """This engine's cache if it is of `version` (the head's, read under its lock), else an empty one."""
    return fit(_CACHES.pop(engine, None), version)


def take_any(engine: Engine) -> WriterCache | None:
    """This engine's cache whatever its version (to be checked with `fit`, or against the head)."""
    return _CACHES.pop(engine, None)


def fit(cache: WriterCache | None, version: int) -> WriterCache:
    """`cache` if it is of `version` and not too large, else an empty one of that version."""
    if cache is None or cache.version != version or len(cache.accounts) > MAX_CACHED_ACCOUNTS:
        return WriterCache(version)
    if len(cache.transfers) > MAX_CACHED_TRANSFERS:
        cache.transfers.clear()
        cache.holds.clear()
    return cache


def keep(engine: Engine, cache: WriterCache) -> None:
    """Put a cache back after its writer committed (with `version` set to what the commit left)."""
    _CACHES[engine] = cache


def put_back(engine: Engine, cache: WriterCache) -> None:
    """Return a cache taken but not used (unless another writer has put one back meanwhile)."""
    _CACHES.setdefault(engine, cache)


def remember_new_accounts(
    engine: Engine, version: int, specs: Iterable[AccountSpec], nums: Mapping[str, int]
) -> None:
    """After accounts were created (committed, the head at `version`): cache them at zero balances.

    A cache of another version is left as it is: a batch may already have moved these accounts."""
    known = specs_of(engine)
    created = [spec for spec in specs if spec.id in nums]
    for spec in created:
        known[spec.id] = spec
    cache = _CACHES.pop(engine, None)
    if cache is None:
        cache = WriterCache(version)
    if cache.version == version:
        for spec in created:
            if spec.id not in cache.accounts:
                cache.accounts[spec.id] = AccountState(spec, Balance())
                cache.nums[spec.id] = nums[spec.id]
    _CACHES.setdefault(engine, cache)  # a writer that committed meanwhile put back a newer one
