"""The control API of `cpnode express` (bearer token on every call; JSON in and out, never state bytes).

Under `/express/v1`:
- `GET  /health`                  `{"ok", "jobs", "buffer_bytes_used", "max_buffer_bytes"}`
- `POST /jobs`                    a `JobSpec` → 201 and the job (200 if a job with that `id` and the
  same request exists; 409 if its request differs)
- `GET  /jobs`                    `{"jobs": [job, ...]}`
- `GET  /jobs/{id}`               the job: state, error, progress
- `PATCH /jobs/{id}`              `{"rate_cap_bytes_per_s": n}` (0: no cap), applied while it runs
- `POST /jobs/{id}/cancel`        202; the job goes `cancelling`, then `cancelled` once its files are
  removed at the destination; cancelling again changes nothing
- `POST /jobs/{id}/resume`        202; a job that stalled (not fatal) is queued again
- `GET  /jobs/{id}/events`        Server-Sent Events `progress` (the job as JSON) on every change
  (changes during one write are coalesced into the next) and at least every second; the stream
  ends after the event of a finished state.
Errors: `{"error": code, "message"}` with 400 `invalid_request`, 401 `unauthorized`, 404
`not_found`, 409 `invalid_state`, 413 `too_large`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from connectors.express.errors import JobConflict, JobNotFound
from connectors.express.jobs import JobSpec
from connectors.express.runner import Express, Job
from connectors.express.store import JobStore
from connectors.serving import serve_until_signal

API = "/express/v1"
MAX_BODY_BYTES = 16 << 20  # a job with a manifest of the largest size
HEARTBEAT_S = 0.9  # below a second, so an event arrives at least every second
EXPRESS_KEY = web.AppKey("express", Express)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _job_json(job: Job) -> dict[str, Any]:
    return job.view().model_dump(mode="json")


def _invalid(exc: ValidationError) -> web.Response:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return _error(400, "invalid_request", f"{where}: {first['msg']}")


async def _json_body(request: web.Request) -> Any:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length or 0)
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=len(body))
    return json.loads(body)


def express_app(express: Express, token: str) -> web.Application:
    """The control API over `express`, guarded by `token`."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return _error(401, "unauthorized", "missing or wrong express token")
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        except JobConflict as exc:
            return _error(409, exc.code, str(exc))
        except JobNotFound as exc:
            return _error(404, exc.code, str(exc))
        except ValueError as exc:  # json.loads
            return _error(400, "invalid_request", f"the body is not JSON: {exc}")

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app[EXPRESS_KEY] = express
    app.router.add_get(API + "/health", _health)
    app.router.add_post(API + "/jobs", _create)
    app.router.add_get(API + "/jobs", _list)
    app.router.add_get(API + "/jobs/{id}", _get)
    app.router.add_patch(API + "/jobs/{id}", _patch)
    app.router.add_post(API + "/jobs/{id}/cancel", _cancel)
    app.router.add_post(API + "/jobs/{id}/resume", _resume)
    app.router.add_get(API + "/jobs/{id}/events", _events)
    return app


async def _health(request: web.Request) -> web.Response:
    express = request.app[EXPRESS_KEY]
    body = {
        "ok": True,
        "jobs": len(express.jobs),
        "buffer_bytes_used": express.buffer_bytes_used,
        "max_buffer_bytes": express.max_buffer_bytes,
    }
    return web.json_response(body)


async def _create(request: web.Request) -> web.Response:
    try:
        spec = JobSpec.model_validate(await _json_body(request))
    except ValidationError as exc:
        return _invalid(exc)
    job, created = request.app[EXPRESS_KEY].create(spec)
    return web.json_response(_job_json(job), status=201 if created else 200)


async def _list(request: web.Request) -> web.Response:
    jobs = request.app[EXPRESS_KEY].ordered()
    return web.json_response({"jobs": [_job_json(job) for job in jobs]})


async def _get(request: web.Request) -> web.Response:
    return web.json_response(_job_json(request.app[EXPRESS_KEY].get(request.match_info["id"])))


async def _patch(request: web.Request) -> web.Response:
    express = request.app[EXPRESS_KEY]
    express.get(request.match_info["id"])
    body = await _json_body(request)
    rate = body.get("rate_cap_bytes_per_s") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"rate_cap_bytes_per_s"}:
        rate = None
    if not isinstance(rate, int) or isinstance(rate, bool):
        return _error(400, "invalid_request", 'the body must be {"rate_cap_bytes_per_s": integer ≥ 0}')
    if not 0 <= rate <= 1 << 40:
        return _error(400, "invalid_request", "rate_cap_bytes_per_s must be from 0 (no cap) to 2^40")
    return web.json_response(_job_json(express.set_rate(request.match_info["id"], rate)))


async def _cancel(request: web.Request) -> web.Response:
    job = await request.app[EXPRESS_KEY].cancel(request.match_info["id"])
    return web.json_response(_job_json(job), status=202)


async def _resume(request: web.Request) -> web.Response:
    job = request.app[EXPRESS_KEY].resume(request.match_info["id"])
    return web.json_response(_job_json(job), status=202)


async def _events(request: web.Request) -> web.StreamResponse:
    express = request.app[EXPRESS_KEY]
    job = express.get(request.match_info["id"])
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    seen = -1
    while not express.closing:
        await job.wait_change(seen, HEARTBEAT_S)
        seen = job.version
        view = job.view()
        data = json.dumps(view.model_dump(mode="json"), separators=(",", ":"))
        try:
            await response.write(f"id: {seen}\nevent: progress\ndata: {data}\n\n".encode())
        except ConnectionError:
            break
        if view.finished:
            break
    return response


async def serve_express(host: str, port: int, token: str, state_file: Path, max_buffer_bytes: int) -> None:
    """Run the express (its stored jobs resumed) and its control API until SIGINT/SIGTERM."""
    express = Express(JobStore(state_file), max_buffer_bytes)
    app = express_app(express, token)

    async def lifetime(_app: web.Application) -> AsyncIterator[None]:
        await express.start()
        yield
        await express.close()

    async def end_streams(_app: web.Application) -> None:
        express.closing = True  # event streams end now instead of holding the shutdown
        for job in express.jobs.values():
            job.touch()

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(end_streams)
    await serve_until_signal(app, host, port, "cpnode express listening at {url}")
