"""The peer API of tasks (role `federation`): a buyer asks about the task it bought here.

Every route is signed and needs a session, as the trade routes do (federation.server), and acts
only on a task of a trade the calling partner bought (another's, or none, answers 404 alike):

    GET  /fed/v1/tasks/{trade_id}                   the signed task status (node.tasks.usage): its
                                                    state, how its run went, kept outputs, and the
                                                    signed usage record once metered
    GET  /fed/v1/tasks/{trade_id}/logs              ?offset=&limit=: a slice of its log (LogChunk)
    GET  /fed/v1/tasks/{trade_id}/outputs/{path}    ?offset=&limit=: bytes of a kept output file
    POST /fed/v1/tasks/{trade_id}/stop              stop it (again: no change); the signed status
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connectors.contract import MAX_LOG_CHUNK_BYTES
from federation import canonical
from federation.partners import Partner
from federation.server import SERVICE as FEDERATION
from federation.server import json_response, read_body
from node.http.auth import ADMIN
from node.tasks.errors import UnknownTaskError
from node.tasks.keep import kept_file
from node.tasks.records import Task
from node.tasks.routes import SERVICE
from node.tasks.usage import status_document

MAX_SLICE = 4 << 20


def _int(request: web.Request, name: str, default: int, most: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 15:
        raise UnknownTaskError(f"{name} must be a non-negative integer", code="bad_request")
    return min(int(raw), most)


async def _sold(request: web.Request) -> tuple[Partner, Task]:
    federation = request.app[FEDERATION]
    body = await read_body(request, federation.settings.max_request_bytes)
    caller = await federation.authenticate(
        request.method, request.raw_path, list(request.headers.items()), body, require_session=True
    )
    trade_id = request.match_info["trade_id"]
    task = await request.app[SERVICE].tasks.get(trade_id) if len(trade_id) <= 100 else None
    if task is None or task.kind != "sold" or task.partner != caller.partner.name:
        raise UnknownTaskError(f"no task for trade {trade_id!r}")
    return caller.partner, task


def status_fields(task: Task) -> dict[str, Any]:
    """What the status document says of a task."""
    return {
        "state": task.state,
        "outcome": task.outcome,
        "started_ms": task.started_ms,
        "ended_ms": task.ended_ms,
        "exit_code": task.exit_code,
        "end_reason": task.end_reason,
        "reason": task.reason,
        "detail": task.detail,
        "outputs": task.kept_outputs(),
        "usage": None if task.usage_record is None else canonical.decode(task.usage_record),
    }


def _status(request: web.Request, partner: Partner, task: Task) -> web.Response:
    tasks = request.app[SERVICE].tasks
    identity = tasks.buyer.trading.identity()
    document = status_document(identity, partner.name, task.id, status_fields(task), tasks.clock_ms() // 1000)
    return json_response(document)


async def status(request: web.Request) -> web.Response:
    """`GET /fed/v1/tasks/{trade_id}`."""
    partner, task = await _sold(request)
    return _status(request, partner, task)


async def logs(request: web.Request) -> web.Response:
    """`GET /fed/v1/tasks/{trade_id}/logs`."""
    _partner, task = await _sold(request)
    offset = _int(request, "offset", 0, 1 << 50)
    limit = _int(request, "limit", 65536, MAX_LOG_CHUNK_BYTES)
    chunk = await request.app[SERVICE].logs(task, offset, limit)
    return json_response(chunk.model_dump())


async def output(request: web.Request) -> web.Response:
    """`GET /fed/v1/tasks/{trade_id}/outputs/{path}`."""
    _partner, task = await _sold(request)
    path = request.match_info["path"]
    try:
        target, entry = kept_file(request.app[SERVICE].tasks, task, path)
    except FileNotFoundError:
        raise UnknownTaskError(f"task {task.id} kept no output {path!r}", code="unknown_output") from None
    offset = _int(request, "offset", 0, entry["size_bytes"])
    limit = _int(request, "limit", MAX_SLICE, MAX_SLICE)
    with target.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(limit)
    return web.Response(body=data, content_type="application/octet-stream")


async def stop(request: web.Request) -> web.Response:
    """`POST /fed/v1/tasks/{trade_id}/stop`."""
    partner, task = await _sold(request)
    task = await request.app[SERVICE].stop(ADMIN, task.id)
    return _status(request, partner, task)


def add_routes(app: web.Application) -> None:
    """Mount the tasks peer API (after the tasks API, whose service it uses)."""
    app.router.add_get("/fed/v1/tasks/{trade_id}", status)
    app.router.add_get("/fed/v1/tasks/{trade_id}/logs", logs)
    app.router.add_get("/fed/v1/tasks/{trade_id}/outputs/{path:.+}", output)
    app.router.add_post("/fed/v1/tasks/{trade_id}/stop", stop)
