"""The consumers' load: each consumer places an order (a partner's offer or a local one) with its own
token, then the order is settled for some of its hours (by the operator, who alone may settle for
hours typed by hand) or cancelled by the consumer, again and again until the window closes (tests.chaos.scenario.Window).

Every operation is one logical request retried until it gets a definite answer, as a careful
client does: the order's id is chosen by the client, so a retried placement finds the order the
first attempt created; settling for the same hours and cancelling are safe to repeat. Transient
answers (no connection, a timeout, 429, 500, 503, 504) are retried with a short backoff and
recorded; everything else is the operation's outcome. After the window no new order starts, but
operations under way run to their answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.chaos.cluster import BUYER

ATTEMPT_TIMEOUT_S = 30.0
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 1.0
REFUSED_PAUSE_S = 0.5
TRANSIENT_STATUSES = frozenset({408, 429, 500, 503, 504})


@dataclass
class Op:
    """One logical request and what became of it."""

    kind: str  # place, settle or cancel
    consumer: str
    order_id: str
    body: dict[str, Any]
    status: int | None = None  # the definite answer's status; None while it has none
    answer: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    transient: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def path(self) -> str:
        """Where the request goes."""
        if self.kind == "place":
            return "/api/v1/orders"
        return f"/api/v1/orders/{self.order_id}/{self.kind}"

    @property
    def ok(self) -> bool:
        """Whether the node accepted it (a 2xx answer)."""
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Consumer:
    """A consumer of the buyer node with its own token."""

    name: str
    token: str
    deposit: int


class Load:
    """Consumers placing, settling and cancelling orders through the balancer."""

    def __init__(
        self, url: str, admin_token: str, consumers: list[Consumer], offers: dict[str, str], seed: int
    ) -> None:
        self.url = url
        self.admin_token = admin_token  # settling for hours typed by hand is the operator's correction
        self.consumers = consumers
        self.offers = offers  # offer id -> source, as the merged offer view shows them
        self.random = random.Random(seed)
        self.ops: list[Op] = []
        self.give_up_at = float("inf")

    @property
    def placed(self) -> int:
        """Orders the node accepted so far (placements answered 201)."""
        return sum(1 for op in self.ops if op.kind == "place" and op.status == 201)

    async def run(self, over: Callable[[], bool]) -> None:
        """Run every consumer until `over()` says the window has closed (operations under way finish)."""
        connector = aiohttp.TCPConnector(force_close=True)  # every request a new connection: spread
        timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await asyncio.gather(*(self._consumer(http, consumer, over) for consumer in self.consumers))

    async def _consumer(
        self, http: aiohttp.ClientSession, consumer: Consumer, over: Callable[[], bool]
    ) -> None:
        count = 0
        while not over():
            count += 1
            order_id = f"{BUYER}.{consumer.name}-{count:06d}"
            offer_id = self.random.choice(sorted(self.offers))
            hours = self.random.randint(1, 4)
            body = {
                "offer_id": offer_id,
                "source": self.offers[offer_id],
                "units": self.random.randint(1, 3),
                "hours": hours,
                "id": order_id,
            }
            placed = await self._complete(http, consumer, Op("place", consumer.name, order_id, body))
            if placed.status != 201:
                await asyncio.sleep(REFUSED_PAUSE_S)  # a consumer reads the refusal before trying again
                continue
            if self.random.random() < 0.6:
                used = {"used_hours": self.random.randint(0, hours)}
                await self._complete(http, consumer, Op("settle", consumer.name, order_id, used))
            else:
                await self._complete(http, consumer, Op("cancel", consumer.name, order_id, {}))

    async def _complete(self, http: aiohttp.ClientSession, consumer: Consumer, op: Op) -> Op:
        """Send `op` until it has a definite answer (or the harness gives up on it)."""
        self.ops.append(op)
        op.started = time.monotonic()
        backoff_s = FIRST_BACKOFF_S
        token = self.admin_token if op.kind == "settle" else consumer.token
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < self.give_up_at:
            op.attempts += 1
            headers["X-Request-Id"] = f"{op.order_id}/{op.kind}/{op.attempts}"
            try:
                async with http.post(self.url + op.path, json=op.body, headers=headers) as response:
                    status = response.status
                    answer = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                op.transient.append(type(exc).__name__)
            else:
                code = answer.get("error") if isinstance(answer, dict) else None
                if status not in TRANSIENT_STATUSES:
                    op.status, op.answer = status, answer if isinstance(answer, dict) else {}
                    break
                op.transient.append(f"{status} {code}")
            await asyncio.sleep(backoff_s * (0.5 + self.random.random()))
            backoff_s = min(MAX_BACKOFF_S, 2 * backoff_s)
        op.finished = time.monotonic()
        return op

    def counts(self) -> dict[str, Any]:
        """Operations by kind and outcome, transient answers seen, and retries."""
        outcomes = Counter(
            f"{op.kind} {op.status if op.status is not None else 'unanswered'}" for op in self.ops
        )
        transient = Counter(reason for op in self.ops for reason in op.transient)
        return {
            "operations": len(self.ops),
            "outcomes": dict(sorted(outcomes.items())),
            "transient": dict(sorted(transient.items())),
            "retried_operations": sum(1 for op in self.ops if op.attempts > 1),
            "attempts": sum(op.attempts for op in self.ops),
        }


async def open_consumers(url: str, admin_token: str, names: list[str], deposits: list[int]) -> list[Consumer]:
    """Create each consumer, fund it (deposit ids make this safe to repeat) and issue its token."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    consumers = []
    async with aiohttp.ClientSession(url, headers=headers) as http:
        for name, amount in zip(names, deposits, strict=True):
            for path, body in (
                ("/api/v1/consumers", {"id": name}),
                (f"/api/v1/consumers/{name}/deposits", {"amount": amount, "id": f"dep-{name}"}),
            ):
                async with http.post(path, json=body) as response:
                    if response.status not in (200, 201):
                        raise RuntimeError(f"{path}: {response.status} {await response.text()}")
            async with http.post(f"/api/v1/consumers/{name}/tokens", json={}) as response:
                issued = await response.json()
                if response.status != 201:
                    raise RuntimeError(f"token for {name}: {response.status} {issued}")
            consumers.append(Consumer(name, str(issued["token"]), amount))
    return consumers


async def offer_sources(url: str, admin_token: str) -> dict[str, str]:
    """Offer id -> source of the merged offer view."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(url, headers=headers) as http, http.get("/api/v1/offers") as response:
        body = await response.json()
    return {str(row["id"]): str(row["source"]) for row in body["offers"]}
