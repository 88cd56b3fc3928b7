"""The simulator's `alpha` dialect: resource-oriented REST with long-running operations.

`POST /alpha/v1/tokens {"accessKey","secretKey"}` → `{"token","expiresIn"}`; every other call
carries `Authorization: Bearer <token>`. Lists take `pageSize` (≤ 50) and `pageToken` and answer
`nextPageToken` ("" on the last page). Mutations answer 202 with `{"operation": {"name", "done"}}`
to poll at `GET /alpha/v1/operations/{id}`. Errors: HTTP status + `{"error": {"code", "message"}}`.
Programs run for real: a server shows `launchTime`/`terminateTime` (ISO 8601, ms), `exitCode` and
`statusReason` (e.g. `INPUT_MISMATCH`); `GET servers/{id}/logs?offset=&limit=` answers base64
`data` with `nextOffset`; `GET servers/{id}/outputs` the kept files and their read-only bucket;
`GET runtimes` the frameworks its images run on.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from connectors.cloudsim.state import CloudState, Operation, SimInstance
from connectors.contract import InputFile, Program
from connectors.errors import ConnectorError, InvalidRequest, Unauthorized
from connectors.serving import json_object, log_range, require_strings
from connectors.statuses import status_of
from connectors.storage import outputs_bucket

_STATUS = {
    "creating": "PROVISIONING",
    "stopped": "SHUTOFF",
    "starting": "STAGING",
    "running": "ACTIVE",
    "failed": "ERROR",
    "deleted": "DELETED",
}
_CODES = {
    400: "InvalidArgument",
    401: "Unauthenticated",
    404: "NotFound",
    409: "FailedPrecondition",
    503: "Unavailable",
    504: "DeadlineExceeded",
}
PREFIX = "/alpha/v1"


def alpha_error(status: int, message: str) -> web.Response:
    """An error in the alpha format."""
    return web.json_response(
        {"error": {"code": _CODES.get(status, "Internal"), "message": message}}, status=status
    )


def iso_ms(epoch_ms: int | None) -> str | None:
    """An epoch time in ms as alpha shows it (ISO 8601 UTC, milliseconds)."""
    if epoch_ms is None:
        return None
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def alpha_program(program: Program) -> dict[str, Any]:
    """A program as alpha's API spells it (shared with the alpha adapter)."""
    return {
        "command": program.command,
        "image": program.image,
        "framework": program.framework,
        "env": program.env,
        "inputs": [
            {"url": f.url, "path": f.path, "sizeBytes": f.size_bytes, "sha256": f.sha256}
            for f in program.inputs
        ],
        "outputs": program.outputs,
        "maxDurationSeconds": program.max_duration_s,
    }


def program_from_alpha(data: dict[str, Any]) -> Program:
    """The program an alpha body describes; ValidationError or KeyError if malformed."""
    inputs = [
        InputFile(url=f["url"], path=f["path"], size_bytes=f["sizeBytes"], sha256=f["sha256"])
        for f in data.get("inputs") or []
    ]
    return Program(
        command=data.get("command"),
        image=data.get("image"),
        framework=data.get("framework"),
        env=data.get("env") or {},
        inputs=inputs,
        outputs=data.get("outputs") or [],
        max_duration_s=data.get("maxDurationSeconds"),
    )


def _server(i: SimInstance) -> dict[str, Any]:
    run = i.run
    return {
        "id": i.id,
        "name": i.name,
        "regionId": i.region,
        "flavorId": i.flavor,
        "status": _STATUS[i.state],
        "program": alpha_program(i.program) if i.program else None,
        "createTime": dt.datetime.fromtimestamp(i.created_s, dt.UTC).isoformat(),
        "launchTime": iso_ms(run.started_ms if run else None),
        "terminateTime": iso_ms(run.ended_ms if run else None),
        "exitCode": run.exit_code if run else None,
        "statusReason": run.reason.upper() if run and run.reason else None,
        "statusMessage": run.detail if run else "",
    }


def _operation(op: Operation, state: CloudState) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"operations/{op.id}", "done": op.done}
    if op.done and op.error:
        body["error"] = {"code": "FailedPrecondition", "message": op.error}
    elif op.done:
        body["response"] = {**_server(state.instances[op.instance_id]), **op.result}
    return body


def _page(request: web.Request, items: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    try:
        size = int(request.query.get("pageSize", "20"))
        start = int(request.query.get("pageToken") or 0)
    except ValueError:
        raise InvalidRequest("pageSize and pageToken must be integers") from None
    if not 1 <= size <= 50 or start < 0:
        raise InvalidRequest("pageSize must be 1–50")
    chunk = items[start : start + size]
    return {key: list(chunk), "nextPageToken": str(start + size) if start + size < len(items) else ""}


# One closure per route of the simulated platform, over its state: read as the platform's API.
def install_alpha(app: web.Application, state: CloudState) -> None:  # noqa: C901, PLR0915
    """Mount the alpha dialect's routes over `state`."""
    tokens: dict[str, str] = {}
    secrets_by_key = {a.access_key: a.secret_key for a in state.inventory.accounts}

    def authed(fn: Callable[[web.Request, str], Awaitable[Any]], status: int = 200) -> Any:
        async def handler(request: web.Request) -> web.Response:
            header = request.headers.get("Authorization", "")
            account = tokens.get(header.removeprefix("Bearer "))
            if account is None:
                return alpha_error(401, "missing or expired token")
            try:
                await state.settle()
                return web.json_response(await fn(request, account), status=status)
            except ConnectorError as exc:
                return alpha_error(status_of(exc), str(exc))

        return handler

    async def token(request: web.Request) -> web.Response:
        try:
            data = await json_object(request)
            if secrets_by_key.get(str(data.get("accessKey"))) != data.get("secretKey"):
                raise Unauthorized("unknown access key or wrong secret")
        except ConnectorError as exc:
            return alpha_error(status_of(exc), str(exc))
        issued = secrets.token_urlsafe(16)
        tokens[issued] = str(data["accessKey"])
        return web.json_response({"token": issued, "expiresIn": 3600})

    async def regions(r: web.Request, _a: str) -> Any:
        rows = [
            {"regionId": x.id, "displayName": x.name, "cityCode": x.city} for x in state.inventory.regions
        ]
        return _page(r, rows, "regions")

    async def flavors(r: web.Request, _a: str) -> Any:
        rows = [
            {
                "flavorId": f.id,
                "accelerator": {"model": f.chip, "count": f.chips},
                "vcpus": f.cpus,
                "memoryMiB": f.memory_mib,
                "diskGiB": f.storage_gib,
                "bandwidthGbps": f.network_gbps,
            }
            for f in state.inventory.flavors
        ]
        return _page(r, rows, "flavors")

    async def prices(r: web.Request, _a: str) -> Any:
        rows = [
            {
                "regionId": s.region,
                "flavorId": s.flavor,
                "currency": "CNY",
                "unitPriceFen": s.price_minor_per_hour,
                "unit": "HOUR",
            }
            for s in state.inventory.stock
        ]
        return _page(r, rows, "prices")

    async def capacity(r: web.Request, _a: str) -> Any:
        rows = [
            {"regionId": rg, "flavorId": fl, "available": free, "total": total}
            for rg, fl, free, total in state.capacity()
        ]
        return _page(r, rows, "capacity")

    async def quotas(r: web.Request, _a: str) -> Any:
        rows = [
            {"regionId": rg, "resource": "vcpus", "limit": limit, "used": used}
            for rg, limit, used in state.quotas()
        ]
        return _page(r, rows, "quotas")

    async def metrics(_request: web.Request, _a: str) -> Any:
        rows = [
            {
                "regionId": x.id,
                "cpuUtilization": state.utilisation_permille(x.id) / 1000,
                "memoryFreeRatio": 1 - state.utilisation_permille(x.id) / 1000,
                "networkFreeMbps": 100_000,
            }
            for x in state.inventory.regions
        ]
        return {"metrics": rows}

    async def create(r: web.Request, account: str) -> Any:
        data = await json_object(r)
        require_strings(data, ("name", "regionId", "flavorId"))
        _instance, op = state.create(account, data["name"], data["regionId"], data["flavorId"])
        return {"operation": _operation(op, state)}

    async def servers(r: web.Request, account: str) -> Any:
        return _page(r, [_server(i) for i in state.listing(account)], "servers")

    async def server(r: web.Request, account: str) -> Any:
        return _server(state.instance(account, r.match_info["id"]))

    async def delete(r: web.Request, account: str) -> Any:
        return {"operation": _operation(state.delete(account, r.match_info["id"]), state)}

    async def action(r: web.Request, account: str) -> Any:
        iid, name = r.match_info["id"], r.match_info["action"]
        data = await json_object(r, empty_ok=True)
        if name == "deploy":
            try:
                program = program_from_alpha(data)
            except (ValidationError, KeyError, TypeError) as exc:
                raise InvalidRequest(f"not a valid program: {exc}") from None
            return _server(state.deploy(account, iid, program))
        if name in ("start", "stop"):
            op = state.power(account, iid, name == "start", restore=bool(data.get("restore", False)))
            return {"operation": _operation(op, state)}
        if name == "checkpoint":
            return {"operation": _operation(state.checkpoint(account, iid), state)}
        raise InvalidRequest(f"unknown action {name!r}")

    async def operation(r: web.Request, account: str) -> Any:
        return _operation(await state.operation(account, r.match_info["id"]), state)

    async def logs(r: web.Request, account: str) -> Any:
        instance = state.instance(account, r.match_info["id"])
        offset, limit = log_range(r)
        chunk = state.box(instance).logs(offset, limit)
        return {
            "data": chunk.data_b64,
            "offset": chunk.offset,
            "nextOffset": chunk.next_offset,
            "totalBytes": chunk.size_bytes,
            "complete": chunk.complete,
        }

    async def outputs(r: web.Request, account: str) -> Any:
        instance = state.instance(account, r.match_info["id"])
        files = state.box(instance).kept_outputs()
        return {
            "complete": files is not None,
            "files": [{"path": f.path, "sizeBytes": f.size_bytes, "sha256": f.sha256} for f in files or []],
            "endpoint": state.storage_url,
            "bucket": outputs_bucket(instance.id),
            "token": state.storage_token,
        }

    async def runtimes(_r: web.Request, _a: str) -> Any:
        return {"frameworks": sorted(state.sandbox.runtimes)}

    async def storage(r: web.Request, account: str) -> Any:
        instance = state.instance(account, r.match_info["id"])
        return {"endpoint": state.storage_url, "bucket": instance.id, "token": state.storage_token}

    app.router.add_post(PREFIX + "/tokens", token)
    app.router.add_get(PREFIX + "/regions", authed(regions))
    app.router.add_get(PREFIX + "/flavors", authed(flavors))
    app.router.add_get(PREFIX + "/prices", authed(prices))
    app.router.add_get(PREFIX + "/capacity", authed(capacity))
    app.router.add_get(PREFIX + "/quotas", authed(quotas))
    app.router.add_get(PREFIX + "/metrics", authed(metrics))
    app.router.add_post(PREFIX + "/servers", authed(create, 202))
    app.router.add_get(PREFIX + "/servers", authed(servers))
    app.router.add_get(PREFIX + "/servers/{id}", authed(server))
    app.router.add_delete(PREFIX + "/servers/{id}", authed(delete, 202))
    app.router.add_post(PREFIX + "/servers/{id}/actions/{action}", authed(action))
    app.router.add_get(PREFIX + "/servers/{id}/storage", authed(storage))
    app.router.add_get(PREFIX + "/operations/{id}", authed(operation))
    app.router.add_get(PREFIX + "/servers/{id}/logs", authed(logs))
    app.router.add_get(PREFIX + "/servers/{id}/outputs", authed(outputs))
    app.router.add_get(PREFIX + "/runtimes", authed(runtimes))
