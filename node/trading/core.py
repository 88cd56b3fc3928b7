"""What the buyer and seller sides of trading share: the node, its federation service, capacity."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.engine import Engine

from federation import store as federation_store
from federation.httpsig import Identity
from federation.partners import Partner
from federation.service import FederationService
from ledger import AccountSpec, Status, TransferRequest
from node.db import in_thread
from node.trading import books
from node.trading.capacity import Capacity
from node.trading.errors import UnknownError
from node.trading.settings import TradingSection

T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class Trading:
    """One node's trading: its name, database, federation service, capacity and settings."""

    name: str
    engine: Engine
    service: FederationService
    capacity: Capacity
    settings: TradingSection
    clock: Callable[[], int] = field(default=lambda: int(time.time()))

    def identity(self) -> Identity:
        """The node's current signing identity (follows key rotation)."""
        return self.service.identity()

    async def db(self, fn: Callable[Concatenate[Engine, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking database call `fn(engine, ...)` off the event loop, on the engine's threads
        (arguments type-checked)."""
        return await in_thread(self.engine, fn, *args, **kwargs)

    async def submit(self, requests: Sequence[TransferRequest]) -> Status | None:
        """Submit a ledger batch through the group committer, awaited on the loop (no thread waits
        for the commit); None when every transfer is stored, else the failure's cause."""
        return await books.submit_async(self.engine, requests)

    async def ensure_accounts(self, specs: Sequence[AccountSpec]) -> None:
        """Create the ledger accounts that do not exist (a database thread only for ones not yet
        known to this process)."""
        if not books.accounts_known(self.engine, specs):
            await self.db(books.ensure_accounts, specs)

    async def partner(self, name: str) -> Partner:
        """A pinned partner, or UnknownError."""
        partner = await self.db(federation_store.get_partner, name)
        if partner is None:
            raise UnknownError(f"{name!r} is not a partner of this node", code="unknown_partner")
        return partner
