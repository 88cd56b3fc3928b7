"""Tasks partners bought here (kind `sold`): taking them with the trade, and what differs from an
own task — the sale decides whether it runs, and its end is metered into a signed usage record.

The trade request carries the task document (node.trading.documents):

    "task": {"task_id": "<the buyer's task id>", "spec": {program, inputs, outputs, max_duration_s, name},
             "consumer"?: "<the buyer's consumer>", "migration"?: "<the buyer's migration id>"}

The consumer is optional; the task is stored as `consumer@buyer`, the federated account that may
follow it here on its home node's assertion (node.accounts.federated).

A task document with `migration` is a running program the buyer moves here (node.migration.inbound):
its task waits in `ordered` while the buyer's migration prepares, fills and starts the instance
over the peer API (node.migration.peer_routes), and is delivered from the buyer's cutover on.

(the spec without `resources`: the trade's offer and terms are its resources). Before the sale is
recorded the seller checks it whole (`check`): a spec that does not parse (422 `bad_task`, naming
the field), an offer this node cannot run tasks on (`not_deliverable`), or a framework with no
image for the offer's chip (`no_framework_image`) refuse the trade and nothing is recorded. Once the
sale is opened the task is stored (`opened`, idempotent, id = the trade id) in state `ordered`;
it waits there until the sale is accepted (and fails `provision_failed` if the sale is refused or
cancelled instead). From then on it is delivered like an own task, as long as the sale stands
(a sale the buyer cancelled meanwhile stops it). When its run is over, the run
is metered and the signed usage record stored with it; the buyer settles the trade from it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from federation import canonical
from federation.assertions import SUBJECT_RE
from federation.partners import Partner
from node.migration import inbound
from node.migration.records import MIGRATION_ID_RE
from node.offers import CatalogOffer
from node.tasks import store
from node.tasks.core import Tasks
from node.tasks.delivery import Delivery, image_json
from node.tasks.finish import Finish, metered
from node.tasks.ordering import Refused, image_for
from node.tasks.records import Task
from node.tasks.service import check_runnable
from node.tasks.spec import TaskSpecError, parse_task_spec
from node.tasks.usage import usage_record
from node.trading import store as trading_store
from node.trading.errors import Refusal
from node.trading.records import Sale

Action = Callable[[Task], Awaitable[bool]]
# Sale states in which its task runs; the others end it before it ran (or stop it).
SALE_RUNS = frozenset({"accepted", "settling", "settled"})


def sold_spec(task: Any, offer_id: str, hours: int) -> dict[str, Any]:
    """The spec a partner's task document gives, with the trade's offer as its resources; Refusal
    when it is not a task document."""
    if (
        not isinstance(task, dict)
        or not {"task_id", "spec"} <= set(task) <= {"task_id", "spec", "consumer", "migration"}
        or not isinstance(task["spec"], dict)
    ):
        raise Refusal(
            422, "bad_task", "task must be an object with task_id, spec and optionally consumer and migration"
        )
    if "consumer" in task and not (
        isinstance(task["consumer"], str) and SUBJECT_RE.fullmatch(task["consumer"])
    ):
        raise Refusal(422, "bad_task", "task.consumer must be a consumer id")
    if "migration" in task and migration_of(task) is None:
        raise Refusal(422, "bad_task", "task.migration must be a migration id")
    if not isinstance(task["task_id"], str) or not 1 <= len(task["task_id"]) <= 100:
        raise Refusal(422, "bad_task", "task.task_id must be a string of 1–100 characters")
    if "resources" in task["spec"]:
        raise Refusal(422, "bad_task", "task.spec.resources: the trade's offer is the task's resources")
    return {**task["spec"], "resources": {"offer_id": offer_id, "source": "own", "units": 1, "hours": hours}}


def migration_of(task: Any) -> str | None:
    """The migration a task document brings here (`"migration": ID`: a running program moved from the
    buyer's pool; node.migration.inbound), or None."""
    value = task.get("migration") if isinstance(task, dict) else None
    return value if isinstance(value, str) and MIGRATION_ID_RE.fullmatch(value) else None


class SoldTasks:
    """Takes the tasks trades carry (node.trading.seller.TaskDelivery) and finishes them."""

    def __init__(self, tasks: Tasks, delivery: Delivery, finish: Finish, nudge: Any) -> None:
        self.tasks = tasks
        self.delivery = delivery
        self.finish = finish
        self.nudge = nudge

    async def check(self, partner: Partner, task: Any, offer: CatalogOffer) -> None:  # noqa: ARG002 (the trade check hook's signature)
        """Refuse a task this node cannot run on `offer` (see the module docstring)."""
        data = sold_spec(task, offer["id"], 1)
        try:
            spec = parse_task_spec(data)
            check_runnable(spec)
        except TaskSpecError as exc:
            raise Refusal(422, "bad_task", f"task.spec.{exc.field}: {exc.reason}") from None
        host = self.tasks.host
        pools = None if host is None else {p.name for p in host.plugins() if p.kind == "compute"}
        if len(offer["id"].split("/")) != 3 or (pools is not None and offer["pool"] not in pools):
            raise Refusal(
                422, "not_deliverable", f"offer {offer['id']} is not on a pool that runs tasks here"
            )
        try:
            image_for(spec, offer["chip_model"])
        except Refused as exc:
            raise Refusal(422, exc.code, str(exc)) from None

    async def opened(self, partner: Partner, sale: Sale, task: dict[str, Any]) -> None:
        """Store the sale's task in `ordered` (idempotent by the trade id)."""
        t = self.tasks
        assert sale.offer_id is not None
        assert sale.pool is not None
        data = sold_spec(task, sale.offer_id, sale.hours)
        spec = parse_task_spec(data)
        _, region, flavor = sale.offer_id.split("/")
        found = await t.buyer.trading.capacity.find(sale.offer_id)
        chip = "cpu" if found is None else found[1]["chip_model"]
        now = t.clock_ms()
        values = {
            "id": sale.trade_id,
            "kind": "sold",
            "consumer": f"{task['consumer']}@{partner.name}" if "consumer" in task else None,
            "partner": partner.name,
            "name": spec.name,
            "spec": json.dumps(data, sort_keys=True, separators=(",", ":")),
            "order_id": sale.trade_id,
            "order_round": 0,
            "offer_id": sale.offer_id,
            "source": "own",
            "pool": sale.pool,
            "region_id": region,
            "flavor_id": flavor,
            "units": sale.units,
            "hours": sale.hours,
            "price_per_unit_hour": sale.price_per_unit_hour,
            "currency": sale.currency,
            "image": image_json(image_for(spec, chip)),
            "created_ms": now,
            "updated_ms": now,
        }
        migration = migration_of(task)
        if migration is not None:  # recorded first: the task waits for the migration from its start
            await t.db(inbound.add_inbound, partner.name, migration, sale.trade_id, now)
        await t.db(store.insert_task, values, "ordered")
        self.nudge(sale.trade_id)

    async def on_ordered(self, task: Task) -> bool:
        """Provision once the sale is accepted; fail the task if the sale ended without running it."""
        t = self.tasks
        assert task.partner is not None
        assert task.order_id is not None
        sale = await t.db(trading_store.get_sale, task.partner, task.order_id)
        if sale is None or sale.state == "open":
            return False
        if sale.state in SALE_RUNS:
            brought = await t.db(inbound.inbound_of_trade, task.order_id)
            if brought is not None and brought.state in inbound.HOLDING:
                return False  # the partner's migration creates and starts the instance (its cutover ends the wait)
            return await self.delivery.on_ordered(task)
        reason = f"provision_failed: the sale is {sale.state}" + (f" ({sale.reason})" if sale.reason else "")
        return await t.move(task, "provision_failed", reason, reason=reason) is not None

    def while_sold(self, action: Action) -> Action:
        """`action`, for as long as the sale stands: a sale cancelled or expired meanwhile (the buyer
        gave the trade up) stops the task instead, so nothing runs that nobody pays for."""

        async def guarded(task: Task) -> bool:
            assert task.partner is not None
            assert task.order_id is not None
            sale = await self.tasks.db(trading_store.get_sale, task.partner, task.order_id)
            if sale is not None and sale.state not in SALE_RUNS:
                return await self.tasks.move(task, "stop", f"the sale is {sale.state}") is not None
            return await action(task)

        return guarded

    async def on_ended(self, task: Task) -> bool:
        """Keep outputs and log, sign the usage record, delete the instance, release."""
        if task.usage_record is None:
            task = await self.sign_usage(task)
        return await self.finish.on_ended(task)

    async def sign_usage(self, task: Task) -> Task:
        """Meter the run and store the signed usage record (before anything is deleted)."""
        t = self.tasks
        assert task.partner is not None
        assert task.order_id is not None
        used_s, _amount = metered(task)
        terms = {
            "offer_id": task.offer_id,
            "units": task.units,
            "hours": task.hours,
            "price_per_unit_hour": task.price_per_unit_hour,
            "currency": task.currency,
        }
        run = {
            "started_ms": task.started_ms,
            "ended_ms": task.ended_ms,
            "exit_code": task.exit_code,
            "end_reason": task.end_reason,
            "outcome": task.outcome,
        }
        identity = t.buyer.trading.identity()
        record = usage_record(identity, task.partner, task.order_id, terms, run, used_s, t.clock_ms() // 1000)
        return await t.update(task, usage_record=canonical.encode(record)) or task
