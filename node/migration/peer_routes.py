"""The peer API of migrations (role `federation`, on the destination node): what a partner that moves
a running program to one of this node's pools tells this node. Every route is signed and needs a
session (as the trade routes, federation.server), takes `{"trade_id", ...}` as canonical JSON, acts
only on a migration the calling partner's own trade brought here (another's, or none, answers 404
alike) and answers a signed document (node.migration.documents):

    POST /fed/v1/migrations/{id}/prepare     create the instance on the trade's pool and deploy the
                                             trade's program; it waits, stopped       → destination
    POST /fed/v1/migrations/{id}/credential  {"files": [...], "valid_s"}: a transfer credential for
                                             those files of the instance's storage, in one window
                                             (asked again: the same credential)      → credential
    POST /fed/v1/migrations/{id}/start       start the instance from the moved state → destination
    POST /fed/v1/migrations/{id}/cutover     the partner committed: the sold task is delivered from
                                             here on (followed, metered, settled)    → destination
    POST /fed/v1/migrations/{id}/release     the partner gave up: the instance is deleted (409 once
                                             committed); the partner then cancels the order → destination

Each is idempotent: asked again, it answers what is, doing only what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import web

from connectors.contract import Instance, InstanceSpec
from connectors.errors import ConnectorError, NotFound
from federation import canonical
from federation.errors import FederationError
from federation.partners import Partner
from federation.server import SERVICE as FEDERATION
from federation.server import json_response, read_body
from node.migration import documents
from node.migration.errors import MigrationConflict, MigrationRequestError, UnknownMigration
from node.migration.inbound import Inbound, get_inbound, update_inbound
from node.tasks.component import TASKS
from node.tasks.core import Tasks, instance_name
from node.tasks.delivery import program_of
from node.tasks.records import Task
from node.tasks.routes import SERVICE
from node.tasks.sold import SALE_RUNS
from node.trading import store as trading_store

MAX_VALID_S = 24 * 3600
START_TIMEOUT_S = 60.0
MAX_FILES = 1000


async def _call(request: web.Request) -> tuple[Partner, Inbound, Task, dict[str, Any]]:
    """The calling partner, its inbound migration, the sold task, and the request body."""
    federation = request.app[FEDERATION]
    body = await read_body(request, federation.settings.max_request_bytes)
    caller = await federation.authenticate(
        request.method, request.raw_path, list(request.headers.items()), body, require_session=True
    )
    try:
        data = canonical.decode(body)
    except FederationError as exc:
        raise MigrationRequestError(f"the body is not canonical JSON: {exc}", code="bad_request") from None
    if not isinstance(data, dict) or not isinstance(data.get("trade_id"), str):
        raise MigrationRequestError("the body must be an object with trade_id", code="bad_request")
    tasks = request.app[TASKS]
    migration_id = request.match_info["id"]
    partner = caller.partner
    inbound = await tasks.db(get_inbound, partner.name, migration_id) if len(migration_id) <= 64 else None
    task = await tasks.get(data["trade_id"]) if len(data["trade_id"]) <= 100 else None
    if (
        inbound is None
        or task is None
        or inbound.trade_id != data["trade_id"]
        or task.kind != "sold"
        or task.partner != partner.name
    ):
        raise UnknownMigration(
            f"no migration {migration_id!r} of trade {data['trade_id']!r} from {partner.name}"
        )
    return partner, inbound, task, data


def _answer(
    request: web.Request, partner: Partner, inbound: Inbound, kind: str, fields: dict[str, Any]
) -> web.Response:
    tasks = request.app[TASKS]
    document = documents.signed(
        tasks.buyer.trading.identity(),
        kind,
        partner.name,
        inbound.id,
        inbound.trade_id,
        fields,
        int(time.time()),
    )
    return json_response(document)


def _destination(
    request: web.Request, partner: Partner, inbound: Inbound, instance: Instance | None, detail: str = ""
) -> web.Response:
    fields = {
        "state": inbound.state,
        "instance_id": inbound.instance_id,
        "instance_state": None if instance is None else instance.state,
        "started_ms": None if instance is None else instance.started_ms,
        "exit_code": None if instance is None else instance.exit_code,
        "detail": (detail or (instance.detail if instance is not None else None) or "")[:500],
    }
    return _answer(request, partner, inbound, documents.DESTINATION_TYPE, fields)


async def _find(tasks: Tasks, task: Task, inbound: Inbound) -> Instance | None:
    """The migration's instance on the trade's pool (by id, or by the task's instance name)."""
    assert task.pool is not None
    pool = task.pool
    if inbound.instance_id is not None:
        instance_id = inbound.instance_id
        try:
            return await tasks.pool_call(pool, lambda p: p.get_instance(instance_id))
        except NotFound:
            return None
    name = instance_name(task.id)
    found = await tasks.pool_call(pool, lambda p: p.list_instances())
    return next((i for i in found if i.name == name and i.state != "deleted"), None)


async def _wait(tasks: Tasks, pool: str, instance: Instance, busy: str) -> Instance:
    deadline = time.monotonic() + START_TIMEOUT_S
    instance_id = instance.id
    while instance.state == busy and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        instance = await tasks.pool_call(pool, lambda p: p.get_instance(instance_id))
    return instance


def _not_released(inbound: Inbound) -> None:
    if inbound.state == "released":
        raise MigrationConflict(f"migration {inbound.id} was released", code="migration_released")


async def prepare(request: web.Request) -> web.Response:
    """`POST /fed/v1/migrations/{id}/prepare`."""
    partner, inbound, task, _data = await _call(request)
    tasks = request.app[TASKS]
    _not_released(inbound)
    assert task.pool is not None
    pool = task.pool
    sale = await tasks.db(trading_store.get_sale, partner.name, inbound.trade_id)
    if sale is None or sale.state not in SALE_RUNS:
        raise MigrationConflict(
            f"the sale of trade {inbound.trade_id} is not accepted", code="sale_not_accepted"
        )
    try:
        instance = await _find(tasks, task, inbound)
        if instance is None:
            spec = InstanceSpec(
                name=instance_name(task.id), region_id=task.region_id or "", flavor_id=task.flavor_id or ""
            )
            instance = await tasks.pool_call(pool, lambda p: p.create_instance(spec))
        instance = await _wait(tasks, pool, instance, "creating")
        if instance.program is None:
            program, instance_id = program_of(task), instance.id
            instance = await tasks.pool_call(pool, lambda p: p.deploy(instance_id, program))
    except ConnectorError as exc:
        raise MigrationConflict(
            f"pool {pool} refused the destination: {exc}", code="destination_refused"
        ) from None
    if inbound.state == "ordered" or inbound.instance_id != instance.id:
        state = "prepared" if inbound.state == "ordered" else inbound.state
        inbound = await tasks.db(
            update_inbound, partner.name, inbound.id, tasks.clock_ms(), state=state, instance_id=instance.id
        )
    return _destination(request, partner, inbound, instance)


async def credential(request: web.Request) -> web.Response:
    """`POST /fed/v1/migrations/{id}/credential`."""
    partner, inbound, task, data = await _call(request)
    tasks = request.app[TASKS]
    _not_released(inbound)
    files, valid_s = data.get("files"), data.get("valid_s")
    if (
        not isinstance(files, list)
        or not 1 <= len(files) <= MAX_FILES
        or not all(isinstance(f, str) and 0 < len(f) <= 1024 for f in files)
    ):
        raise MigrationRequestError(f"files must list 1–{MAX_FILES} paths", code="bad_request")
    if type(valid_s) is not int or not 1 <= valid_s <= MAX_VALID_S:
        raise MigrationRequestError(
            f"valid_s must be an integer of 1–{MAX_VALID_S} seconds", code="bad_request"
        )
    if inbound.state != "prepared" or inbound.instance_id is None:
        raise MigrationConflict(
            f"migration {inbound.id} is {inbound.state}; credentials are issued while it is prepared",
            code="invalid_migration_state",
        )
    if inbound.files is not None and sorted(inbound.files) != sorted(files):
        raise MigrationConflict(
            "a credential for other files was issued for this migration", code="files_differ"
        )
    now_s = int(time.time())
    if inbound.not_before is None or inbound.expires is None or now_s >= inbound.expires:
        inbound = await tasks.db(
            update_inbound,
            partner.name,
            inbound.id,
            tasks.clock_ms(),
            files=sorted(files),
            not_before=now_s,
            expires=now_s + valid_s,
        )
    assert task.pool is not None
    assert inbound.instance_id is not None
    assert inbound.not_before is not None
    assert inbound.expires is not None
    instance_id, window = inbound.instance_id, (inbound.not_before, inbound.expires)
    endpoint = await tasks.pool_call(
        task.pool,
        lambda p: p.transfer_grant(
            instance_id, sorted(files), inbound.id, partner.name, window[0], window[1]
        ),
    )
    fields = {
        "storage": endpoint.model_dump(mode="json"),
        "files": sorted(files),
        "not_before": window[0],
        "expires": window[1],
    }
    return _answer(request, partner, inbound, documents.CREDENTIAL_TYPE, fields)


async def start(request: web.Request) -> web.Response:
    """`POST /fed/v1/migrations/{id}/start`."""
    partner, inbound, task, _data = await _call(request)
    tasks = request.app[TASKS]
    _not_released(inbound)
    if inbound.state == "ordered":
        raise MigrationConflict(
            f"migration {inbound.id} has no destination yet", code="invalid_migration_state"
        )
    assert task.pool is not None
    pool = task.pool
    instance = await _find(tasks, task, inbound)
    if instance is None:
        raise MigrationConflict(f"the instance of migration {inbound.id} is gone", code="destination_lost")
    if inbound.state == "prepared":
        if instance.started_ms is None and instance.state in ("stopped", "failed"):
            instance_id = instance.id
            instance = await tasks.pool_call(pool, lambda p: p.start_instance(instance_id, restore=True))
        inbound = await tasks.db(update_inbound, partner.name, inbound.id, tasks.clock_ms(), state="started")
    instance = await _wait(tasks, pool, instance, "starting")
    return _destination(request, partner, inbound, instance)


async def cutover(request: web.Request) -> web.Response:
    """`POST /fed/v1/migrations/{id}/cutover`."""
    partner, inbound, task, _data = await _call(request)
    tasks = request.app[TASKS]
    _not_released(inbound)
    if inbound.state not in ("started", "committed"):
        raise MigrationConflict(
            f"migration {inbound.id} is {inbound.state}; only a started one commits",
            code="invalid_migration_state",
        )
    if inbound.state == "started":
        inbound = await tasks.db(
            update_inbound, partner.name, inbound.id, tasks.clock_ms(), state="committed"
        )
    request.app[SERVICE].nudge(task.id)
    return _destination(request, partner, inbound, await _find(tasks, task, inbound))


async def release(request: web.Request) -> web.Response:
    """`POST /fed/v1/migrations/{id}/release`."""
    partner, inbound, task, _data = await _call(request)
    tasks = request.app[TASKS]
    if inbound.state == "committed":
        raise MigrationConflict(
            f"migration {inbound.id} committed; it runs here", code="invalid_migration_state"
        )
    assert task.pool is not None
    pool = task.pool
    instance = await _find(tasks, task, inbound)
    if instance is not None and instance.state != "deleted":
        instance_id = instance.id
        with contextlib.suppress(NotFound):
            await tasks.pool_call(pool, lambda p: p.delete_instance(instance_id))
    if inbound.state != "released":
        inbound = await tasks.db(update_inbound, partner.name, inbound.id, tasks.clock_ms(), state="released")
    return _destination(request, partner, inbound, None, "released")


def add_routes(app: web.Application) -> None:
    """Mount the migrations peer API (needs the tasks component: the sold tasks and their pools)."""
    for name, handler in (
        ("prepare", prepare),
        ("credential", credential),
        ("start", start),
        ("cutover", cutover),
        ("release", release),
    ):
        app.router.add_post(f"/fed/v1/migrations/{{id}}/{name}", handler)
