"""A migration whose destination is a partner's pool (the source side): what the steps do there.

The destination is bought through the market as a task order (node.tasks ordering: the trade carries
the task document, with `"migration": ID`, so the partner holds the task until the cutover). The
partner is then told over its signed peer API (node.migration.peer_routes) to prepare the instance,
to issue a transfer credential for the checkpoint's files, to start from the moved state, that the
cutover committed, or to release everything. Its answers are signed documents, checked against its
pinned keys (node.migration.documents). The data express writes the state straight into the
partner pool's storage endpoint with that credential: the nodes carry no state bytes.

Undo: the partner releases the instance and the order is cancelled (its holds voided on both
sides). A partner that does not answer cannot stop the rollback: its instance goes with the
cancelled order once the cancel is delivered (trading's upkeep delivers it when it answers again).
"""

from __future__ import annotations

import time
from typing import Any

from connectors.contract import StorageEndpoint
from federation import canonical
from node.market.ordering import order_id_for
from node.migration import documents
from node.migration.core import MigrationCore
from node.migration.errors import StepFailed
from node.migration.records import Migration
from node.tasks import store as tasks_store
from node.tasks.ordering import Ordering, task_document
from node.tasks.records import Task
from node.trading import peer
from node.trading.errors import PartnerUnavailableError, RefusedError, TradingError


def _tasks(core: MigrationCore) -> Any:
    if core.tasks is None:
        raise StepFailed("this process has no tasks service to order a partner's pool", code="no_trading")
    return core.tasks


async def task_of(core: MigrationCore, m: Migration) -> Task:
    """The task the migration moves (a partner's destination is bought for its consumer)."""
    task = None if m.task_id is None else await core.db(tasks_store.get_task, m.task_id)
    if task is None:
        raise StepFailed(f"migration {m.id} moves no task of this node", code="unknown_task")
    return task


async def order(core: MigrationCore, m: Migration) -> dict[str, Any]:
    """Buy the destination: the partner's cheapest offer (or the one named) of the task's chip with
    the units free, ordered for the task's consumer; the migration's fields for it."""
    tasks = _tasks(core)
    task = await task_of(core, m)
    assert m.partner is not None
    wanted = (m.plan or {}).get("ask", {}).get("offer_id")
    rows = await Ordering(tasks).offers()
    own = next((r for r in rows if r["id"] == task.offer_id and r["source"] == task.source), None)
    chip = None if own is None else own.get("chip_model")
    fits = [
        r
        for r in rows
        if r.get("partner") == m.partner
        and (wanted is None or r["id"] == wanted)
        and (chip is None or r.get("chip_model") == chip)
        and int(r.get("free_units") or 0) >= (task.units or 1)
    ]
    if not fits:
        raise StepFailed(
            f"{m.partner} offers no {chip or 'fitting'} units free for this task"
            + (f" (offer {wanted})" if wanted else ""),
            code="no_destination",
        )
    offer = min(fits, key=lambda r: (int(r.get("price_per_unit_hour") or 0), str(r["id"])))
    assert task.consumer is not None
    order_id = order_id_for(tasks.name, task.consumer, f"migration/{m.id}", 0)
    carried = {**task_document(task), "migration": m.id}
    try:
        placed = await tasks.buyer.place(
            task.consumer, offer["id"], offer["source"], task.units or 1, task.hours or 1, order_id, carried
        )
    except RefusedError as exc:
        raise StepFailed(f"{m.partner} refused the order: {exc}", code="partner_refused") from None
    except PartnerUnavailableError:
        raise
    except TradingError as exc:
        raise StepFailed(
            f"the order could not be placed: {exc.code}: {exc}", code="partner_refused"
        ) from None
    _pool, region, flavor = [*str(offer["id"]).split("/"), "", "", ""][:3]
    return {
        "order_id": placed.id,
        "destination_pool": f"{m.partner}:{offer.get('pool') or _pool}",
        "destination_region": region or None,
        "destination_flavor": flavor or None,
    }


async def call(core: MigrationCore, m: Migration, route: str, kind: str, **fields: Any) -> dict[str, Any]:
    """One signed call to the partner about the migration; its signed answer, checked. StepFailed
    when the partner refuses; PartnerUnavailableError (tried again) when it does not answer."""
    tasks = _tasks(core)
    trading = tasks.buyer.trading
    assert m.partner is not None
    partner = await trading.partner(m.partner)
    body = canonical.encode({"trade_id": m.order_id, **fields})
    path = f"/fed/v1/migrations/{m.id}/{route}"
    response = await peer.post(trading.service, partner, path, body, trading.settings.trade_timeout_s)
    document = peer.answer_document(response, partner)
    if response.status != 200:
        code, message = response.error()
        raise StepFailed(f"{partner.name} refused {route}: {response.status} {code}: {message}", code=code)
    await peer.verify_from(trading.service, partner, document)
    documents.check(document, kind, partner.name, trading.identity().node, m.id, str(m.order_id))
    return document


async def prepare(core: MigrationCore, m: Migration) -> str:
    """Have the partner create and deploy the destination; its instance id."""
    answer = await call(core, m, "prepare", documents.DESTINATION_TYPE)
    instance_id = answer.get("instance_id")
    if not isinstance(instance_id, str):
        raise StepFailed(f"{m.partner} prepared no instance", code="bad_document")
    return instance_id


async def credential(core: MigrationCore, m: Migration) -> StorageEndpoint:
    """The partner pool's storage endpoint with a transfer credential for the checkpoint's files."""
    assert m.checkpoint is not None
    files = sorted(f["path"] for f in m.checkpoint["files"])
    answer = await call(
        core, m, "credential", documents.CREDENTIAL_TYPE, files=files, valid_s=core.settings.credential_s
    )
    documents.check_credential(answer, files, int(time.time()))
    return StorageEndpoint.model_validate(answer["storage"])


async def start(core: MigrationCore, m: Migration) -> dict[str, Any]:
    """Have the partner start the destination from the moved state; its signed answer."""
    return await call(core, m, "start", documents.DESTINATION_TYPE)


async def cutover(core: MigrationCore, m: Migration) -> None:
    """Tell the partner that the cutover committed (its task is delivered from now on)."""
    await call(core, m, "cutover", documents.DESTINATION_TYPE)


async def release(core: MigrationCore, m: Migration) -> str:
    """The undo of a partner's destination: the partner releases it, the order is cancelled."""
    if m.order_id is None:
        return "no order placed"
    tasks = _tasks(core)
    outcome = []
    try:
        await call(core, m, "release", documents.DESTINATION_TYPE)
        outcome.append(f"{m.partner} released the destination")
    except PartnerUnavailableError as exc:
        outcome.append(f"{m.partner} did not answer ({exc}); its instance goes with the cancelled order")
    except StepFailed as exc:
        if exc.code != "unknown_migration":
            raise
        outcome.append(f"{m.partner} holds nothing for it")
    order = await tasks.buyer.get(m.order_id)
    if order.state == "accepted":
        try:
            order = await tasks.buyer.cancel(order.id)
        except TradingError as exc:
            order = await tasks.buyer.get(order.id)
            if order.state not in ("cancelling", "voiding", "cancelled"):
                raise
            outcome.append(f"cancel stored, delivered when {m.partner} answers ({exc.code})")
    outcome.append(f"order {order.id} {order.state}")
    return "; ".join(outcome)
