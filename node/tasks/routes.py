"""HTTP API of tasks (role `api`); every route takes the admin token or a consumer's own token.

    POST /api/v1/tasks                    {"spec": {...}, "consumer"?, "id"?}: submit a task
    GET  /api/v1/tasks[?consumer=C]       newest first
    GET  /api/v1/tasks/{id}               one task with its history
    GET  /api/v1/tasks/{id}/logs          ?offset=N&limit=N: a slice of its log (base64, as the
                                          compute contract's LogChunk)
    GET  /api/v1/tasks/{id}/outputs       the kept output files (path, size_bytes, sha256)
    GET  /api/v1/tasks/{id}/outputs/{path} one kept output file's bytes
    POST /api/v1/tasks/{id}/stop          stop it (again: no change)
    GET  /api/v1/tasks/{id}/events        Server-Sent Events: `state` (each history entry, its id
                                          the event id), `log` ({"offset", "text"}) as the log
                                          grows, and `end` once the task is released

A consumer token acts for its consumer only (another consumer's task answers 404 as a missing
one). The event stream resumes after the entry named by `Last-Event-ID` (or `?after=`) and the
log from `?log_offset=`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from connectors.contract import MAX_LOG_CHUNK_BYTES
from connectors.errors import ConnectorError
from node.accounts import store as accounts
from node.context import CTX
from node.db import in_thread
from node.http.body import parse_body
from node.http.errors import ApiError
from node.tasks.errors import TaskError
from node.tasks.records import Task
from node.tasks.service import TaskService
from node.tasks.spec import TaskSpecError

SERVICE = web.AppKey("tasks_service", TaskService)
STREAM_POLL_S = 0.2
LOG_SLICE = 64 * 1024


class NewTask(BaseModel):
    """A task to submit: its spec, for whom (a consumer token's own consumer by default), an id."""

    model_config = ConfigDict(extra="forbid")

    spec: Any
    consumer: str | None = Field(default=None, min_length=1, max_length=63)
    id: str | None = Field(default=None, max_length=100)


class NoBody(BaseModel):
    """A request that takes no fields."""

    model_config = ConfigDict(extra="forbid")


def _int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 15:
        raise ApiError(400, "bad_request", f"{name} must be a non-negative integer", field=name)
    return int(raw)


async def _task(request: web.Request) -> tuple[TaskService, Task]:
    caller = await request.app[CTX].authenticate(request)
    service = request.app[SERVICE]
    return service, await service.get(caller, request.match_info["id"])


async def submit(request: web.Request) -> web.Response:
    """`POST /api/v1/tasks`: submit a task."""
    caller = await request.app[CTX].authenticate(request)
    body = await parse_body(request, NewTask)
    consumer = body.consumer if body.consumer is not None else caller.consumer
    if consumer is None:
        raise ApiError(400, "bad_request", "consumer: needed with the admin token", field="consumer")
    if not caller.is_admin and consumer != caller.consumer:
        raise ApiError(403, "forbidden", "a consumer token can only submit tasks of its own consumer")
    await in_thread(request.app[CTX].engine, accounts.require_active, "consumer", consumer)
    try:
        created, task = await request.app[SERVICE].submit(consumer, body.spec, body.id)
    except TaskSpecError as exc:
        field = exc.field if exc.field == "consumer" else f"spec.{exc.field}"
        raise ApiError(422, exc.code, f"{field}: {exc.reason}", field=field) from None
    return web.json_response(task.view(), status=201 if created else 200)


async def list_tasks(request: web.Request) -> web.Response:
    """`GET /api/v1/tasks[?consumer=C]`."""
    caller = await request.app[CTX].authenticate(request)
    consumer = request.query.get("consumer")
    if not caller.is_admin and consumer not in (None, caller.consumer):
        raise ApiError(403, "forbidden", "a consumer token can only list the tasks of its own consumer")
    tasks = await request.app[SERVICE].list_for(caller, consumer)
    return web.json_response({"tasks": [t.view() for t in tasks]})


async def show(request: web.Request) -> web.Response:
    """`GET /api/v1/tasks/{id}`: the task and its history."""
    service, task = await _task(request)
    history = await service.history(task)
    return web.json_response({**task.view(), "history": [e.view() for e in history]})


async def logs(request: web.Request) -> web.Response:
    """`GET /api/v1/tasks/{id}/logs?offset=&limit=`."""
    service, task = await _task(request)
    offset = _int_query(request, "offset", 0)
    limit = min(_int_query(request, "limit", LOG_SLICE), MAX_LOG_CHUNK_BYTES)
    chunk = await service.logs(task, offset, limit)
    return web.json_response(chunk.model_dump())


async def outputs(request: web.Request) -> web.Response:
    """`GET /api/v1/tasks/{id}/outputs`: the kept files."""
    service, task = await _task(request)
    return web.json_response(service.outputs(task))


async def output_file(request: web.Request) -> web.StreamResponse:
    """`GET /api/v1/tasks/{id}/outputs/{path}`: one kept file (read at the partner for its tasks)."""
    service, task = await _task(request)
    entry, slices = await service.output_slices(task, request.match_info["path"])
    response = web.StreamResponse(
        headers={"X-Content-SHA256": entry["sha256"], "Content-Type": "application/octet-stream"}
    )
    response.content_length = int(entry["size_bytes"])
    first = await anext(slices, b"")  # a partner's refusal is still an error answer, not a cut stream
    await response.prepare(request)
    await response.write(first)
    async for block in slices:
        await response.write(block)
    await response.write_eof()
    return response


async def stop(request: web.Request) -> web.Response:
    """`POST /api/v1/tasks/{id}/stop`."""
    caller = await request.app[CTX].authenticate(request)
    await parse_body(request, NoBody)
    task = await request.app[SERVICE].stop(caller, request.match_info["id"])
    return web.json_response(task.view())


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


async def events(request: web.Request) -> web.StreamResponse:
    """`GET /api/v1/tasks/{id}/events`: state changes and the log as Server-Sent Events."""
    service, task = await _task(request)
    after = _int_query(request, "after", 0)
    last = request.headers.get("Last-Event-ID", "")
    if last.isdigit() and len(last) <= 15:
        after = max(after, int(last))
    log_offset = _int_query(request, "log_offset", 0)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    unavailable = ""
    while True:
        for entry in await service.history(task, after):
            after = entry.id
            await response.write(_sse("state", entry.view(), entry.id))
        fresh = await service.tasks.get(task.id)
        task = fresh or task
        log_done = False
        while True:
            try:
                chunk = await service.logs(task, log_offset, LOG_SLICE)
            except (TaskError, ConnectorError) as exc:
                if str(exc) != unavailable:  # said once, not every round
                    unavailable = str(exc)
                    await response.write(_sse("log_unavailable", {"message": unavailable}))
                break
            data = chunk.data()
            if data:
                text = data.decode("utf-8", errors="replace")
                await response.write(_sse("log", {"offset": chunk.offset, "text": text}))
            log_offset = chunk.next_offset
            log_done = chunk.complete
            if len(data) < LOG_SLICE:
                break
        if task.state == "released" and (log_done or task.outputs is not None):
            for entry in await service.history(task, after):
                await response.write(_sse("state", entry.view(), entry.id))
            await response.write(_sse("end", task.view()))
            break
        await asyncio.sleep(STREAM_POLL_S)
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    """Mount the tasks API for `service` (already set as the app's SERVICE)."""
    app.router.add_post("/api/v1/tasks", submit)
    app.router.add_get("/api/v1/tasks", list_tasks)
    app.router.add_get("/api/v1/tasks/{id}", show)
    app.router.add_get("/api/v1/tasks/{id}/logs", logs)
    app.router.add_get("/api/v1/tasks/{id}/outputs", outputs)
    app.router.add_get("/api/v1/tasks/{id}/outputs/{path:.+}", output_file)
    app.router.add_post("/api/v1/tasks/{id}/stop", stop)
    app.router.add_get("/api/v1/tasks/{id}/events", events)
