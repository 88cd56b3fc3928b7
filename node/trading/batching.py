"""Sending trade requests to a partner in batches, like a group commit (federation.trade_batches).

A trade request goes on the event loop's next turn when fewer than `exchanges` exchanges are in
flight to its partner, with every request posted before that turn (the orders one placing
transaction wrote are all woken in one turn: they go together, not the first alone and the rest
after it); the requests that arrive while an exchange is in flight wait and go together in the
next one, up to `max_trades` requests and `max_bytes` bytes. So a lone order pays no added
latency (one turn of the loop), and concurrent orders for one partner share the HTTP exchange,
its signature, the partner's session check and its write transaction. One request alone goes to
`POST /fed/v1/trades` as before; two or more to `POST /fed/v1/trades/batch`.

Each request keeps its own signed document and gets its own signed answer; each is retried on its
own, as `peer.post` retries one (no answer, 429 or 5xx, until its deadline), in whichever exchange
comes next. A partner that answers a batch 404 does not take batches (an older node): the batch's
requests and every request for the next `NO_BATCHES_S` go one by one. A partner that answers a
batch 413 takes smaller bodies than `max_bytes`: the batch's requests go one by one, and for the
next `NO_BATCHES_S` its batches stay under half the refused batch's size.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from federation import canonical
from federation.client import PeerResponse
from federation.documents import SIGNATURES
from federation.errors import FederationError, PeerError, UnsafeURLError
from federation.partners import Partner
from federation.service import FederationService
from federation.trade_batches import BATCH_ANSWER_TYPE, BATCH_PATH, BATCH_TYPE, MAX_BATCH_TRADES
from node.trading import peer
from node.trading.errors import PartnerUnavailableError, ProtocolError
from node.trading.peer import SignedAnswer

log = logging.getLogger("cpnode.trading")
TRADES_PATH = "/fed/v1/trades"
MAX_BATCH_BYTES = 512 * 1024  # below the partner's request limit (1 MiB by default)
NO_BATCHES_S = 300.0  # how long a partner that answered a batch 404 is sent requests one by one


@dataclass
class _Pending:
    """A trade request waiting for an exchange, and where its answer goes (None: no batches)."""

    body: bytes
    session: str | None
    answer: asyncio.Future[PeerResponse | None]


@dataclass
class _Lane:
    """One partner's requests waiting, its exchanges in flight, and until when it takes no batches."""

    waiting: list[_Pending] = field(default_factory=list)
    in_flight: int = 0
    no_batches_until: float = 0.0
    max_bytes: int = 0  # a smaller batch size the partner asked for with 413 (0: the batcher's)
    max_bytes_until: float = 0.0
    starting: bool = False  # an exchange's start is scheduled for the loop's next turn


@dataclass
class Counts:
    """How many trade requests went out, in how many exchanges (batched ones apart)."""

    requests: int = 0
    exchanges: int = 0
    batches: int = 0


def batch_body(bodies: list[bytes]) -> bytes:
    """A batch envelope's canonical bytes around trade requests' canonical bytes."""
    return b'{"requests":[' + b",".join(bodies) + b'],"type":"' + BATCH_TYPE.encode() + b'"}'


def split_answers(response: PeerResponse, count: int, partner: str) -> list[PeerResponse]:
    """The answers of a batch's 200 response, one per request as if each had been sent alone;
    ProtocolError when the response is not such an answer."""
    try:
        data = canonical.decode(response.body)
    except FederationError as exc:
        raise ProtocolError(f"{partner} answered a trade batch with bad JSON: {exc}") from None
    answers = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("type") != BATCH_ANSWER_TYPE or not isinstance(answers, list):
        raise ProtocolError(f"{partner} answered a trade batch with something other than its answer")
    if len(answers) != count:
        raise ProtocolError(f"{partner} answered {len(answers)} of a batch of {count} trade requests")
    out: list[PeerResponse] = []
    for answer in answers:
        status = answer.get("status") if isinstance(answer, dict) else None
        if type(status) is not int or not 100 <= status <= 599 or not isinstance(answer.get("body"), dict):
            raise ProtocolError(f"{partner} answered a trade of a batch without a status and an object")
        body, payload = canonical.encode_object(answer["body"], SIGNATURES)
        out.append(SignedAnswer(status, body, answer["body"], payload))
    return out


class TradeBatcher:
    """Trade requests to partners, batched per partner (see the module docstring)."""

    def __init__(
        self,
        service: FederationService,
        max_trades: int,
        exchanges: int = 1,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.service = service
        self.max_trades = min(max_trades, MAX_BATCH_TRADES)
        self.exchanges = exchanges
        self.max_bytes = max_bytes
        self.counts = Counts()
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def post(
        self, partner: Partner, body: bytes, deadline_s: float, session: str | None = None
    ) -> PeerResponse:
        """POST one trade request to `partner` within `deadline_s`, batched with others meanwhile;
        the partner's answer to it, as `peer.post` gives it (same errors)."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.setdefault(partner.name, _Lane())
        if self.max_trades <= 1 or len(body) > self._cap(lane) or lane.no_batches_until > loop.time():
            self.counts.requests += 1
            self.counts.exchanges += 1  # at least (its retries are not counted)
            return await peer.post(self.service, partner, TRADES_PATH, body, deadline_s, session)
        deadline = loop.time() + deadline_s
        backoff_s, last = peer.FIRST_BACKOFF_S, "no attempt"
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PartnerUnavailableError(
                    f"{partner.name} did not answer {TRADES_PATH} within {deadline_s:g} s ({last})"
                )
            pending = _Pending(body, session, loop.create_future())
            session = None  # only the first attempt
            lane.waiting.append(pending)
            self._start_soon(partner, lane)
            try:
                async with asyncio.timeout(remaining):
                    response = await pending.answer  # cancelled with the wait
            except TimeoutError:
                if pending in lane.waiting:
                    lane.waiting.remove(pending)
                last = "no answer in time"
                continue
            except UnsafeURLError as exc:
                raise PartnerUnavailableError(f"{partner.name} may not be called: {exc}") from None
            except PeerError as exc:
                if exc.code == "response_too_large":
                    raise ProtocolError(f"{partner.name} answered with too much data: {exc}") from None
                last = str(exc) or type(exc).__name__
            except FederationError as exc:  # a failed login is retried like a lost answer
                last = str(exc) or type(exc).__name__
            else:
                if response is None:  # to go alone: the partner takes no batches, or none this large
                    return await peer.post(
                        self.service, partner, TRADES_PATH, body, max(0.001, deadline - loop.time())
                    )
                if response.status != 429 and response.status < 500:
                    return response
                code, message = response.error()
                last = f"{response.status} {code}: {message}"
            log.debug("%s %s: %s; retrying", partner.name, TRADES_PATH, last)
            await asyncio.sleep(min(backoff_s, max(0.0, deadline - loop.time())))
            backoff_s = min(peer.MAX_BACKOFF_S, backoff_s * 2)

    def _cap(self, lane: _Lane) -> int:
        """The most bytes of trade requests one exchange to the lane's partner carries."""
        if lane.max_bytes and lane.max_bytes_until > asyncio.get_running_loop().time():
            return lane.max_bytes
        return self.max_bytes

    def _start_soon(self, partner: Partner, lane: _Lane) -> None:
        """Start exchanges on the loop's next turn, so the requests of callers woken together
        (the orders one placing transaction wrote) go in one exchange, not the first alone."""
        if not lane.starting:
            lane.starting = True
            asyncio.get_running_loop().call_soon(self._start_now, partner, lane)

    def _start_now(self, partner: Partner, lane: _Lane) -> None:
        lane.starting = False
        self._start(partner, lane)

    def _start(self, partner: Partner, lane: _Lane) -> None:
        """Start exchanges for the waiting requests while fewer than `exchanges` are in flight."""
        cap = self._cap(lane)
        while lane.waiting and lane.in_flight < self.exchanges:
            batch = [lane.waiting.pop(0)]
            size = len(batch[0].body)
            while (
                lane.waiting and len(batch) < self.max_trades and size + len(lane.waiting[0].body) + 1 <= cap
            ):
                size += len(lane.waiting[0].body) + 1
                batch.append(lane.waiting.pop(0))
            lane.in_flight += 1
            task = asyncio.create_task(self._send(partner, lane, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, partner: Partner, lane: _Lane, batch: list[_Pending]) -> None:
        """Run one exchange and hand each request its answer (or the exchange's error)."""
        try:
            answers = await self._exchange(partner, lane, batch)
        except Exception as exc:
            for pending in batch:
                if not pending.answer.done():
                    pending.answer.set_exception(exc)
        else:
            for pending, answer in zip(batch, answers, strict=True):
                if not pending.answer.done():
                    pending.answer.set_result(answer)
        finally:
            lane.in_flight -= 1
            self._start(partner, lane)

    async def _exchange(
        self, partner: Partner, lane: _Lane, batch: list[_Pending]
    ) -> list[PeerResponse | None]:
        token = next((p.session for p in batch if p.session is not None), None)
        self.counts.exchanges += 1
        self.counts.requests += len(batch)
        if len(batch) == 1:
            return [await peer.post_once(self.service, partner, TRADES_PATH, batch[0].body, token)]
        self.counts.batches += 1
        body = batch_body([pending.body for pending in batch])
        response = await peer.post_once(self.service, partner, BATCH_PATH, body, token)
        if response.status in (404, 405):
            log.info("%s takes no trade batches; sending its trade requests one by one", partner.name)
            lane.no_batches_until = asyncio.get_running_loop().time() + NO_BATCHES_S
            return [None] * len(batch)
        if response.status == 413:  # the partner takes smaller bodies: these alone, smaller batches
            lane.max_bytes = len(body) // 2
            lane.max_bytes_until = asyncio.get_running_loop().time() + NO_BATCHES_S
            log.info(
                "%s refused a trade batch of %d bytes as too large; its batches stay under %d bytes",
                partner.name,
                len(body),
                lane.max_bytes,
            )
            return [None] * len(batch)
        if response.status != 200:  # the whole batch refused: each request gets that answer
            return [response] * len(batch)
        return list(split_answers(response, len(batch), partner.name))

    async def close(self) -> None:
        """Wait for the exchanges in flight (their requests' senders may have given up)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
