"""A sale a trade request opens at the seller, written in the trade claim's transaction
(federation.claims), alone or with the other trades of a batch (`SaleOpening.write_together`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

import ledger
from federation import claim_states
from ledger import TransferRequest
from node.offers import CatalogOffer
from node.trading import store
from node.trading.store import Sale


@dataclass
class SaleOpening(claim_states.AnsweringWrite):
    """A sale a trade request opens, written in the trade claim's transaction (federation.trades):
    the sale's row, its offer as the pool reports it, the time, the sale's ledger holds, and what
    `open_sale_in` answered and whether the holds were stored with it (`held`).

    `answers`: a sale opened and held is inserted moved on by `held`, and its signed
    acceptance stored there as the trade's answer (`claim_states.Answered`): the whole trade in one
    write transaction, as the handler would have answered it. Not for a trade carrying a task
    (the handler records the task) nor one refused (the handler decides it again)."""

    values: dict[str, Any]
    offer: CatalogOffer
    now: int
    holds: list[TransferRequest] = field(default_factory=list)
    outcome: tuple[str, Sale] | None = None
    held: bool = False
    batch: ledger.JoinedBatch | None = None
    answers: bool = False
    changed: Callable[[], None] = lambda: None  # the reservations changed (`Capacity.changed`)

    def __call__(self, conn: Connection) -> claim_states.Answered | None:
        [answered] = self.write_together(conn, [self])
        return answered

    @classmethod
    def write_together(
        cls, conn: Connection, writes: Sequence[SaleOpening]
    ) -> list[claim_states.Answered | None]:
        """Open the sales of one partner's trades at once (`store.open_sales_in`), the holds of
        those reserved in one ledger write; each opening's answer, as `__call__` one after another
        would give it. A refusal is stored too (as a separate submit would store it); the
        handler's `_hold` then finds the id's remembered failure and refuses the sale."""

        def hold(conn: Connection, reserved: list[int]) -> list[bool]:
            holding = [index for index in reserved if writes[index].holds]
            if holding:
                batch = ledger.submit_batches_in(conn, [writes[index].holds for index in holding])
                for index, results in zip(holding, batch.batches, strict=True):
                    writes[index].batch = batch
                    writes[index].held = all(result.ok for result in results)
            return [writes[index].answers and writes[index].held for index in reserved]

        new = [store.NewSale(write.values, write.offer, write.now) for write in writes]
        for write, outcome in zip(writes, store.open_sales_in(conn, new, hold), strict=True):
            write.outcome = outcome
        return [
            claim_states.Answered(201, write.values["acceptance"], write._committed)
            if write.answers and write.held
            else None
            for write in writes
        ]

    def _committed(self) -> None:
        """After the claim's transaction committed with the answer."""
        if self.batch is not None:
            self.batch.committed()
        self.changed()

    def opened_for(self, partner: str, trade_id: str, request_sha: str) -> bool:
        """Whether it ran, for this partner's trade request."""
        v = self.values
        return self.outcome is not None and (v["partner"], v["trade_id"], v["request_sha256"]) == (
            partner,
            trade_id,
            request_sha,
        )
