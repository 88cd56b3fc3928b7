"""HTTP API of migrations (role `api`, admin token):

    POST /api/v1/migrations/plan        {"source_pool", "instance_id", "to_pool"? | "offer_id"?,
                                         "bandwidth_mbps"?, "hours"?, "objective"?, "state_bytes"?}
                                        → the ranked destinations and why others were left out
    POST /api/v1/migrations             the same, plus "id"? and "task_id"? → 201 the migration
                                        (200 when that id was asked for the same way before); with
                                        "task_id", the source may be left out (the task's instance),
                                        and "to_node" moves the task to that partner's pool (bought
                                        as a task order; "offer_id" names one of its offers)
    GET  /api/v1/migrations             newest first
    GET  /api/v1/migrations/{id}        one migration with its history
    POST /api/v1/migrations/{id}/cancel 202; a second cancel changes nothing; 409 once the cutover began
    POST /api/v1/migrations/{id}/retry  run the undo of a migration that needs attention again
    GET  /api/v1/migrations/{id}/events Server-Sent Events: `transition` for every line of its history
                                        (from the start: every change of state, and notes such as retries
                                        and a re-provisioned path), and `progress` (state, bytes and chunks
                                        done of the total, rate, ETA, retries, last error) on every change
                                        and at least every second; the stream ends once the migration rests

Bodies are checked whole before anything is stored (400 naming the field). A process that hosts
the plugins decides the destination at once (422 `no_destination` saying why each offer was left
out); elsewhere the migration is stored `planned` and the process driving it decides.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from node.context import CTX
from node.http.body import parse_body
from node.migration import planning, store
from node.migration.core import MigrationCore
from node.migration.errors import MigrationConflict, MigrationRequestError, UnknownMigration
from node.migration.machine import RESTING, cancel_target
from node.migration.records import MIGRATION_ID_RE, Migration
from node.tasks import store as tasks_store
from node.trading.errors import TradingError
from node.trading.rules import MAX_HOURS

CORE = web.AppKey("migration_core", MigrationCore)
# Starts driving a migration at once, in a process that drives migrations (node.migration.driver).
KICK: web.AppKey[Callable[[str], None]] = web.AppKey("migration_kick")
CLOSING = web.AppKey("migration_streams_closing", asyncio.Event)
NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
HEARTBEAT_S = 0.9  # below a second, so an event arrives at least every second
STREAM_POLL_S = 0.2
MAX_LISTED = 500


class PlanBody(BaseModel):
    """Which instance to move and where (a pool, an offer, or the best destination)."""

    model_config = ConfigDict(extra="forbid")

    source_pool: str = Field(pattern=NAME)
    instance_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")
    to_pool: str | None = Field(default=None, pattern=NAME)
    offer_id: str | None = Field(default=None, min_length=1, max_length=200)
    bandwidth_mbps: StrictInt | None = Field(default=None, ge=1, le=10**8)
    hours: StrictInt = Field(default=1, ge=1, le=MAX_HOURS)
    objective: Literal["cost", "time"] = "cost"
    state_bytes: StrictInt | None = Field(default=None, ge=0, le=1 << 50)

    @model_validator(mode="after")
    def _one_destination(self) -> PlanBody:
        if self.to_pool is not None and self.offer_id is not None:
            raise ValueError("name a destination pool or an offer, not both")
        return self

    def ask(self) -> planning.Ask:
        """The request as planning takes it."""
        return planning.Ask(
            self.source_pool,
            self.instance_id,
            to_pool=self.to_pool,
            offer_id=self.offer_id,
            bandwidth_mbps=self.bandwidth_mbps,
            hours=self.hours,
            objective=self.objective,
            state_bytes=self.state_bytes,
        )


class StartBody(PlanBody):
    """A migration to start: the plan's request, an id (a retry with it is safe) and the task moved.
    A task's migration may leave out the source (the task's pool and instance) and go to a
    partner's pool (`to_node`, optionally with the partner's `offer_id`)."""

    source_pool: str | None = Field(default=None, pattern=NAME)  # type: ignore[assignment]
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")  # type: ignore[assignment]
    id: str | None = Field(default=None, pattern=MIGRATION_ID_RE.pattern)
    task_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
    to_node: str | None = Field(default=None, pattern=NAME)

    @model_validator(mode="after")
    def _source_or_task(self) -> StartBody:
        if (self.source_pool is None) != (self.instance_id is None):
            raise ValueError("name both source_pool and instance_id, or neither (with task_id)")
        if self.source_pool is None and self.task_id is None:
            raise ValueError("name the source (source_pool and instance_id) or the task (task_id)")
        if self.to_node is not None and (self.to_pool is not None or self.task_id is None):
            raise ValueError("to_node moves a task (task_id) to a partner's pool; it takes no to_pool")
        return self


def event_view(m: Migration) -> dict[str, Any]:
    """What a progress event carries."""
    return {
        "id": m.id,
        "state": m.state,
        "reason": m.reason,
        "last_error": m.last_error,
        "progress": m.progress,
        "state_bytes": m.state_bytes,
        "destination_pool": m.destination_pool,
        "destination_instance": m.destination_instance,
        "path_id": m.path_id,
        "path_reprovisions": m.path_reprovisions,
        "transfer_attempts": m.transfer_attempts,
        "transfer_resumes": m.transfer_resumes,
        "downtime_ms": m.downtime_ms,
        "version": m.version,
        "updated_ms": m.updated_ms,
    }


async def _get(core: MigrationCore, migration_id: str) -> Migration:
    migration = await core.db(store.get_migration, migration_id)
    if migration is None:
        raise UnknownMigration(f"no migration {migration_id!r}")
    return migration


def _kick(request: web.Request, migration_id: str) -> None:
    kick = request.app.get(KICK)
    if kick is not None:
        kick(migration_id)


async def plan_route(request: web.Request) -> web.Response:
    """`POST /api/v1/migrations/plan`."""
    request.app[CTX].require_admin(request)
    body = await parse_body(request, PlanBody)
    core = request.app[CORE]
    decision, source, state_bytes = await planning.plan(core, body.ask())
    answer = {
        "source": source.model_dump(mode="json", exclude={"program"}),
        "state_bytes": state_bytes,
        "bandwidth_mbps": body.bandwidth_mbps or core.settings.bandwidth_mbps,
        "network": core.settings.network,
        **decision.view(),
    }
    return web.json_response(answer)


async def start_route(request: web.Request) -> web.Response:
    """`POST /api/v1/migrations`."""
    request.app[CTX].require_admin(request)
    body = await parse_body(request, StartBody)
    core = request.app[CORE]
    if body.source_pool is None:
        pool, instance_id = await _task_source(core, str(body.task_id))
        body = body.model_copy(update={"source_pool": pool, "instance_id": instance_id})
    ask = body.ask()
    migration_id = body.id or "m" + secrets.token_hex(6)
    values: dict[str, Any] = {
        "id": migration_id,
        "source_pool": body.source_pool,
        "source_instance": body.instance_id,
        "task_id": body.task_id,
    }
    if body.to_node is not None:
        await _partner_of(core, body.to_node)
        values.update(
            partner=body.to_node,
            bandwidth_mbps=ask.bandwidth_mbps or core.settings.bandwidth_mbps,
            plan={"ask": asdict(ask), "to_node": body.to_node},
        )
        return await _store(request, core, values)
    if body.id is not None:
        before = await core.db(store.get_migration, body.id)
        if before is not None:  # a retried request answers the stored migration without planning again
            if (before.plan or {}).get("ask") != asdict(ask):
                raise MigrationConflict(
                    f"migration {before.id} exists and was asked for differently", code="migration_exists"
                )
            _created, migration = await core.db(store.insert_migration, values, core.clock())
            return web.json_response(migration.view(), status=200)
    if core.host is not None:
        decision, _source, state_bytes = await planning.plan(core, ask)
        values.update(planning.destination_fields(core, ask, decision, state_bytes))
    else:
        values["bandwidth_mbps"] = ask.bandwidth_mbps or core.settings.bandwidth_mbps
        values["plan"] = {"ask": asdict(ask)}
    return await _store(request, core, values)


async def _store(request: web.Request, core: MigrationCore, values: dict[str, Any]) -> web.Response:
    created, migration = await core.db(store.insert_migration, values, core.clock())
    if created:
        _kick(request, migration.id)
    return web.json_response(migration.view(), status=201 if created else 200)


async def _task_source(core: MigrationCore, task_id: str) -> tuple[str, str]:
    """(pool, instance) of a running task of this node's own pools; 422 otherwise."""
    task = await core.db(tasks_store.get_task, task_id)
    if task is None:
        raise MigrationRequestError(f"no task {task_id!r}", code="unknown_task")
    if task.kind != "own" or task.state != "running" or task.pool is None or task.instance_id is None:
        raise MigrationRequestError(
            f"task {task_id} is {task.kind}, {task.state}: only a running task on this node's pools migrates",
            code="task_not_running",
        )
    return task.pool, task.instance_id


async def _partner_of(core: MigrationCore, name: str) -> None:
    """422 unless `name` is a partner this node can order from."""
    if core.tasks is None:
        raise MigrationRequestError("this process cannot order from partners", code="no_trading")
    try:
        await core.tasks.buyer.trading.partner(name)
    except TradingError:
        raise MigrationRequestError(
            f"{name!r} is not a partner of this node", code="unknown_partner"
        ) from None


async def list_route(request: web.Request) -> web.Response:
    """`GET /api/v1/migrations`."""
    request.app[CTX].require_admin(request)
    migrations = await request.app[CORE].db(store.list_migrations, MAX_LISTED)
    return web.json_response({"migrations": [m.view() for m in migrations]})


async def show_route(request: web.Request) -> web.Response:
    """`GET /api/v1/migrations/{id}`."""
    request.app[CTX].require_admin(request)
    core = request.app[CORE]
    migration = await _get(core, request.match_info["id"])
    history = await core.db(store.history, migration.id)
    return web.json_response({**migration.view(), "history": history})


async def cancel_route(request: web.Request) -> web.Response:
    """`POST /api/v1/migrations/{id}/cancel`."""
    request.app[CTX].require_admin(request)
    core = request.app[CORE]
    migration = await _get(core, request.match_info["id"])
    while cancel_target(migration.state) is not None:
        moved = await core.db(
            store.move_migration, migration.id, migration.state, "cancel", core.clock(), "cancel requested"
        )
        if moved is not None:
            _kick(request, moved.id)
            return web.json_response(moved.view(), status=202)
        migration = await _get(core, migration.id)  # it moved meanwhile: judge its new state
    return web.json_response(migration.view(), status=200)


async def retry_route(request: web.Request) -> web.Response:
    """`POST /api/v1/migrations/{id}/retry`."""
    request.app[CTX].require_admin(request)
    core = request.app[CORE]
    migration = await _get(core, request.match_info["id"])
    if migration.state != "needs_attention":
        raise MigrationConflict(
            f"migration {migration.id} is {migration.state}; only one that needs attention is retried",
            code="invalid_migration_state",
        )
    moved = await core.db(
        store.move_migration, migration.id, "needs_attention", "retry", core.clock(), "retry"
    )
    if moved is None:
        raise MigrationConflict(f"migration {migration.id} moved meanwhile", code="invalid_migration_state")
    _kick(request, moved.id)
    return web.json_response(moved.view(), status=202)


async def events_route(request: web.Request) -> web.StreamResponse:
    """`GET /api/v1/migrations/{id}/events`."""
    request.app[CTX].require_admin(request)
    core = request.app[CORE]
    closing = request.app[CLOSING]
    migration = await _get(core, request.match_info["id"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    sent_version, sent_at, seen_seq = -1, 0.0, 0
    while not closing.is_set():
        lines = await core.db(store.history, migration.id, seen_seq)
        try:
            for line in lines:
                await _send(response, "transition", {"kind": "transition", "id": migration.id, **line})
                seen_seq = line["seq"]
            now = time.monotonic()
            if migration.version != sent_version or now - sent_at >= HEARTBEAT_S:
                await _send(response, "progress", {"kind": "progress", **event_view(migration)})
                sent_version, sent_at = migration.version, now
        except ConnectionError:
            break
        if migration.state in RESTING and not lines:
            break
        await asyncio.sleep(STREAM_POLL_S)
        found = await core.db(store.get_migration, migration.id)
        if found is None:
            break
        migration = found
    return response


async def _send(response: web.StreamResponse, kind: str, data: dict[str, Any]) -> None:
    body = json.dumps(data, separators=(",", ":"))
    await response.write(f"event: {kind}\ndata: {body}\n\n".encode())


def add_routes(app: web.Application) -> None:
    """Mount the migration routes."""
    app.router.add_post("/api/v1/migrations/plan", plan_route)
    app.router.add_post("/api/v1/migrations", start_route)
    app.router.add_get("/api/v1/migrations", list_route)
    app.router.add_get("/api/v1/migrations/{id}", show_route)
    app.router.add_post("/api/v1/migrations/{id}/cancel", cancel_route)
    app.router.add_post("/api/v1/migrations/{id}/retry", retry_route)
    app.router.add_get("/api/v1/migrations/{id}/events", events_route)
