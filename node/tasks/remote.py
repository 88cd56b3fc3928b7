"""Tasks a partner delivers for this node's consumers (kind `remote`): following them over the
peer API and settling them from the partner's signed usage record.

Following: the driver asks the partner for the task's signed status (`GET /fed/v1/tasks/{trade}`)
every `partner_poll_s` and walks this task through the machine to the partner's state (the shortest path
of the transition table, each move stored), noting what it saw in its own clock: when it first saw
the run going, the last time it saw it going, when it first saw it over. A partner that does not
answer is said in the task's detail (`partner_unreachable`); the task keeps its state and is asked
again: nothing is lost. A stop asked here is sent to the partner until it says it is stopping.

Ending: once the partner's status carries its signed usage record, the record is checked
(node.tasks.usage.check_usage) against the trade and this node's sight; a record asking more than
it allows is recorded as a `usage` discrepancy for reconciliation and the seconds this node's sight
allows are settled. A run that never started cancels the order (the trade is cancelled on both sides and
every hold voided); otherwise the order is settled for the metered seconds, naming the record's
digest. With the partner away, settlement waits and is tried again. Logs and outputs are read
through the partner (`logs`, `output_slice`) when the consumer asks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any
from urllib.parse import quote

import ledger
from connectors.contract import LogChunk
from federation import canonical
from federation.client import PeerResponse
from federation.errors import FederationError
from federation.partners import Partner
from federation.sync import ensure_session
from node.tasks import store
from node.tasks.core import Tasks
from node.tasks.errors import PartnerTaskError
from node.tasks.machine import ENDED, TRANSITIONS, TaskEvent, TaskState
from node.tasks.records import Task
from node.tasks.usage import Sight, UsageCheck, check_status, check_usage
from node.trading import peer, rules
from node.trading.errors import ProtocolError, TradingError
from node.trading.records import Order

log = logging.getLogger("cpnode.tasks")
UNREACHABLE = "partner_unreachable"
# The partner's states this node follows (a sold task starts `ordered`), by name.
FOLLOWED: dict[str, TaskState] = {
    state: state
    for state in (
        "ordered",
        "provisioning",
        "deploying",
        "running",
        "stopping",
        "succeeded",
        "failed",
        "stopped",
    )
}
ORDER_PLACED = "order_placed"


def path_to(state: TaskState, target: TaskState) -> list[TaskEvent]:
    """The shortest run of events that moves a task from `state` to `target` ([] if none or there)."""
    if state == target:
        return []
    seen = {state}
    frontier: deque[tuple[TaskState, list[TaskEvent]]] = deque([(state, [])])
    while frontier:
        current, events = frontier.popleft()
        for (source, event), after in TRANSITIONS.items():
            if source != current or after in seen or event == "release":
                continue
            if after == target:
                return [*events, event]
            seen.add(after)
            frontier.append((after, [*events, event]))
    return []


class Remote:
    """The buyer side of a task a partner runs."""

    def __init__(self, tasks: Tasks) -> None:
        self.tasks = tasks

    # --- calling the partner ------------------------------------------------------------------

    async def _partner(self, task: Task) -> Partner:
        assert task.partner is not None
        return await self.tasks.buyer.trading.partner(task.partner)

    async def _call(self, task: Task, method: str, tail: str = "") -> tuple[Partner, bytes]:
        """One signed call about the task's trade; PartnerTaskError when it fails."""
        t = self.tasks
        service = t.buyer.trading.service
        partner = await self._partner(task)
        path = f"/fed/v1/tasks/{task.order_id}{tail}"
        try:
            async with asyncio.timeout(t.settings.partner_timeout_s):
                token = await ensure_session(service, partner)
                response = await service.client(partner).request(method, path, b"", token=token)
                if response.status == 401:
                    token = await ensure_session(service, partner, force=True)
                    response = await service.client(partner).request(method, path, b"", token=token)
        except (FederationError, TimeoutError, OSError) as exc:
            raise PartnerTaskError(
                f"{partner.name} did not answer {path}: {exc or type(exc).__name__}", code=UNREACHABLE
            ) from None
        if response.status != 200:
            code, message = response.error()
            raise PartnerTaskError(f"{partner.name} answered {response.status} {code}: {message}", code=code)
        return partner, response.body

    async def status(self, task: Task, stop: bool = False) -> dict[str, Any]:
        """The partner's signed status of the task (or its answer to a stop), checked."""
        partner, body = await self._call(task, "POST" if stop else "GET", "/stop" if stop else "")
        try:
            document = peer.answer_document(PeerResponse(200, body), partner)
            await peer.verify_from(self.tasks.buyer.trading.service, partner, document)
            check_status(document, partner.name, self.tasks.name, str(task.order_id))
        except ProtocolError as exc:
            raise PartnerTaskError(str(exc), code=exc.code) from None
        return document

    async def logs(self, task: Task, offset: int, limit: int) -> LogChunk:
        """A slice of the task's log, read at the partner."""
        _partner, body = await self._call(task, "GET", f"/logs?offset={offset}&limit={limit}")
        try:
            return LogChunk.model_validate(canonical.decode(body))
        except (FederationError, ValueError) as exc:
            raise PartnerTaskError(
                f"the partner's log slice is not one: {exc}", code="bad_partner_answer"
            ) from None

    async def output_slice(self, task: Task, path: str, offset: int, limit: int) -> bytes:
        """Bytes of a kept output file, read at the partner."""
        _partner, body = await self._call(
            task, "GET", f"/outputs/{quote(path)}?offset={offset}&limit={limit}"
        )
        return body

    # --- following ------------------------------------------------------------------------------

    async def on_following(self, task: Task) -> bool:
        """Walk the task to the partner's state (ordered … stopping); False when nothing changed."""
        t = self.tasks
        try:
            document = await self.status(task)
            if task.state == "stopping" and document["state"] not in ("stopping", *ENDED, "released"):
                document = await self.status(task, stop=True)
        except (PartnerTaskError, TradingError) as exc:
            await t.note(task, f"{UNREACHABLE}: {exc}"[:500])
            return False
        if task.detail is not None and task.detail.startswith(UNREACHABLE):
            await t.note(task, None)
        theirs = str(document["state"])
        wanted = str(document.get("outcome") or "failed") if theirs in ("released", *ENDED) else theirs
        target = FOLLOWED.get(wanted)
        if target is None:
            return False
        now = t.clock_ms()
        seen: dict[str, Any] = {}
        if theirs == "running":
            seen["seen_running_ms"] = now
            if task.observed_started_ms is None:
                seen["observed_started_ms"] = now
        events = path_to(task.state, target)
        if not events:
            if seen:
                await t.update(task, **seen)
            return False
        run = {k: document.get(k) for k in ("started_ms", "ended_ms", "exit_code", "end_reason")}
        detail = f"at {task.partner}: {document.get('detail') or document.get('reason') or theirs}"
        current: Task | None = task
        for event in events:
            assert current is not None
            values = dict(seen)
            if event == events[-1] and target in ENDED:
                values.update(run, observed_ended_ms=now, reason=document.get("reason"))
            current = await t.move(current, event, detail[:500], **values)
            if current is None:
                return True  # moved meanwhile (a stop): look again
        return True

    # --- ending ---------------------------------------------------------------------------------

    async def on_ended(self, task: Task) -> bool:
        """Check the usage record, settle (or cancel) the order, release (see the module docstring)."""
        t = self.tasks
        try:
            document = await self.status(task)
            if task.outcome == "stopped" and document["state"] not in ("stopping", *ENDED, "released"):
                # Stopped here before the partner was told (a stop while it was still being ordered).
                document = await self.status(task, stop=True)
        except (PartnerTaskError, TradingError) as exc:
            await t.note(task, f"{UNREACHABLE}: settlement waits: {exc}"[:500])
            return False
        record = document.get("usage")
        if not isinstance(record, dict):
            await t.note(task, f"waiting for {task.partner}'s usage record")
            return False
        if document.get("outputs") is None and document.get("state") != "released":
            # The partner signs the usage before it keeps the outputs: their list comes a moment later.
            await t.note(task, f"waiting for {task.partner} to keep the outputs")
            return False
        order = await t.buyer.get(str(task.order_id))
        try:
            partner = await self._partner(task)
            await peer.verify_from(t.buyer.trading.service, partner, record)
            checked = check_usage(
                record,
                partner.name,
                t.name,
                order.id,
                _terms(order),
                await self._sight(task, order),
                t.settings.usage_tolerance_s,
            )
        except ProtocolError as exc:
            await t.note(task, f"bad_usage_record: {exc}"[:500])
            return False
        if not checked.agrees:
            await self._dispute(task, order, record, checked)
        kept = document.get("outputs")
        values = {
            "usage_record": canonical.encode(record),
            "outputs": json.dumps(kept if isinstance(kept, list) else []),
            "used_s": checked.settled_s,
            "amount": _amount(order, checked.settled_s),
        }
        task = await t.update(task, **values) or task
        try:
            await self._settle(task, order, checked)
        except TradingError as exc:
            await t.note(task, f"settlement waits: {exc.code}: {exc}"[:500])
            return False
        return await t.move(task, "release") is not None

    async def _settle(self, task: Task, order: Order, checked: UsageCheck) -> None:
        buyer = self.tasks.buyer
        if order.state in ("settled", "cancelled", "rejected"):
            return
        if order.state != "accepted":
            await buyer.drive(order)
        elif task.started_ms is None and checked.settled_s == 0:
            await buyer.cancel(order.id)
        else:
            await buyer.settle_metered(order.id, checked.settled_s, checked.sha256)

    async def _sight(self, task: Task, order: Order) -> Sight:
        """What this node saw of the run (its own clock)."""
        entries = await self.tasks.db(store.entries, task.id)
        accepted = next((e.ts_ms for e in entries if e.event == ORDER_PLACED), order.created_ts * 1000)
        ended = task.observed_ended_ms or self.tasks.clock_ms()
        return Sight(accepted, task.observed_started_ms, task.seen_running_ms, ended)

    async def _dispute(self, task: Task, order: Order, record: dict[str, Any], checked: UsageCheck) -> None:
        """Record the usage this node disputes, for reconciliation."""
        t = self.tasks
        sight = await self._sight(task, order)
        window = ledger.Window(sight.accepted_ms, max(sight.first_ended_ms, sight.accepted_ms + 1))
        ours = {
            "used_s": checked.settled_s,
            "amount": _amount(order, checked.settled_s),
            "seen": sight.__dict__,
        }
        theirs = {"used_s": checked.claimed_s, "amount": record.get("amount"), "usage_sha256": checked.sha256}
        assert task.partner is not None
        await t.db(
            ledger.record_dispute, task.partner, order.id, ledger.DiscrepancyKind.USAGE, ours, theirs, window
        )
        log.warning(
            "task %s: %s metered %d s, outside the %d s this node saw; settling %d s and recording the dispute",
            task.id, task.partner, checked.claimed_s, checked.settled_s, checked.settled_s,
        )  # fmt: skip


def _terms(order: Order) -> dict[str, Any]:
    return {
        "offer_id": order.offer_id,
        "units": order.units,
        "hours": order.hours,
        "price_per_unit_hour": order.price_per_unit_hour,
        "currency": order.currency,
    }


def _amount(order: Order, used_s: int) -> int:
    return rules.usage_amount(order.units, order.hours, order.price_per_unit_hour, used_s)
