"""The simulator's `beta` dialect: action-style RPC with signed requests and jobs.

Every call is `POST /beta/api` with header `X-Action: <Action>` and a JSON body, signed with
headers `X-Access-Key`, `X-Timestamp` (epoch seconds, ±300 s) and
`X-Signature = hex(HMAC-SHA256(secret, "<Action>\\n<timestamp>\\n<hex SHA-256 of body>"))`.
Answers are always HTTP 200: `{"Response": {..., "RequestId"}}`, or
`{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`. Lists take `Offset`/`Limit` (≤ 100) and
answer `TotalCount`. Mutations answer a `JobId` to poll with `DescribeJob`.
Programs run for real: an instance shows `StartedAt`/`StoppedAt` (epoch ms), `ExitCode` and
`StateReason {Code, Message}` (e.g. `InputMismatch`); `GetInstanceLogs` answers base64 `LogData`
with `NextOffset`; `DescribeInstanceOutputs` the kept files and their read-only bucket;
`DescribeRuntimes` the frameworks its images run on.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, get_args

from aiohttp import web
from pydantic import ValidationError

from connectors.cloudsim.state import CloudState, SimInstance
from connectors.contract import MAX_LOG_CHUNK_BYTES, EndReason, InputFile, Program
from connectors.errors import ConnectorError, InvalidRequest, Unauthorized
from connectors.serving import json_object, require_strings
from connectors.statuses import status_of
from connectors.storage import outputs_bucket

PATH = "/beta/api"
_STATE = {
    "creating": "PENDING",
    "stopped": "STOPPED",
    "starting": "STARTING",
    "running": "RUNNING",
    "failed": "LAUNCH_FAILED",
    "deleted": "TERMINATED",
}
# End reasons as beta spells them: `input_mismatch` ↔ `InputMismatch`.
REASON_CODES: dict[str, str] = {r: r.title().replace("_", "") for r in get_args(EndReason)}
_CODES = {
    400: "InvalidParameter",
    401: "AuthFailure",
    404: "ResourceNotFound",
    409: "OperationDenied",
    503: "ServiceUnavailable",
    504: "RequestTimeout",
}


def signature(secret: str, action: str, timestamp: str, body: bytes) -> str:
    """The beta request signature (shared with the beta adapter)."""
    message = f"{action}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def beta_error(status: int, message: str) -> web.Response:
    """An error in the beta format (HTTP 200, error inside)."""
    code = _CODES.get(status, "InternalError")
    return web.json_response(
        {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": uuid.uuid4().hex}}
    )


def chip_name(key: str) -> str:
    """How beta shows a chip: `nvidia-a100` → `NVIDIA_A100`."""
    return key.upper().replace("-", "_")


def beta_program(program: Program) -> dict[str, Any]:
    """A program as beta's `DeployApplication` spells it (shared with the beta adapter)."""
    body: dict[str, Any] = {
        "Env": [{"Name": k, "Value": v} for k, v in program.env.items()],
        "InputSet": [
            {"Url": f.url, "Path": f.path, "Size": f.size_bytes, "Sha256": f.sha256} for f in program.inputs
        ],
        "OutputPaths": program.outputs,
    }
    for key, value in (
        ("Command", program.command),
        ("ImageUri", program.image),
        ("Framework", program.framework),
        ("MaxDuration", program.max_duration_s),
    ):
        if value is not None:
            body[key] = value
    return body


def program_from_beta(data: dict[str, Any]) -> Program:
    """The program a beta body describes; ValidationError, KeyError or TypeError if malformed."""
    return Program(
        command=data.get("Command"),
        image=data.get("ImageUri"),
        framework=data.get("Framework"),
        env={e["Name"]: e["Value"] for e in data.get("Env") or []},
        inputs=[
            InputFile(url=f["Url"], path=f["Path"], size_bytes=f["Size"], sha256=f["Sha256"])
            for f in data.get("InputSet") or []
        ],
        outputs=data.get("OutputPaths") or [],
        max_duration_s=data.get("MaxDuration"),
    )


def _instance(i: SimInstance) -> dict[str, Any]:
    run = i.run
    reason = {"Code": REASON_CODES[run.reason], "Message": run.detail} if run and run.reason else None
    return {
        "InstanceId": i.id,
        "InstanceName": i.name,
        "Zone": i.region,
        "InstanceType": i.flavor,
        "InstanceState": _STATE[i.state],
        "Program": beta_program(i.program) if i.program else None,
        "CreatedTime": int(i.created_s),
        "StartedAt": run.started_ms if run else None,
        "StoppedAt": run.ended_ms if run else None,
        "ExitCode": run.exit_code if run else None,
        "StateReason": reason,
    }


def _page(data: dict[str, Any], rows: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    offset, limit = data.get("Offset", 0), data.get("Limit", 20)
    if not isinstance(offset, int) or not isinstance(limit, int) or offset < 0 or not 1 <= limit <= 100:
        raise InvalidRequest("Offset must be ≥ 0 and Limit 1–100")
    return {"TotalCount": len(rows), key: list(rows[offset : offset + limit])}


# One closure per action of the simulated platform, over its state: read as the platform's API.
def install_beta(app: web.Application, state: CloudState) -> None:  # noqa: C901, PLR0915
    """Mount the beta dialect's single RPC route over `state`."""
    secrets_by_key = {a.access_key: a.secret_key for a in state.inventory.accounts}
    jobs: dict[str, str] = {}  # beta job id → operation id

    def job(op_id: str) -> dict[str, Any]:
        job_id = f"job-{op_id}"
        jobs[job_id] = op_id
        return {"JobId": job_id}

    def iid(data: dict[str, Any]) -> str:
        value = data.get("InstanceId")
        if not isinstance(value, str):
            raise InvalidRequest("InstanceId is required")
        return value

    async def describe_zones(d: dict[str, Any], _a: str) -> Any:
        rows = [{"Zone": r.id, "ZoneName": r.name, "CityCode": r.city} for r in state.inventory.regions]
        return _page(d, rows, "ZoneSet")

    async def describe_types(d: dict[str, Any], _a: str) -> Any:
        rows = [
            {
                "InstanceType": f.id,
                "GpuModel": chip_name(f.chip),
                "GpuCount": f.chips,
                "Cpu": f.cpus,
                "MemoryGB": f.memory_mib // 1024,
                "DiskGB": f.storage_gib,
                "BandwidthGbps": f.network_gbps,
            }
            for f in state.inventory.flavors
        ]
        return _page(d, rows, "InstanceTypeSet")

    async def describe_price(d: dict[str, Any], _a: str) -> Any:
        rows = [
            {
                "Zone": s.region,
                "InstanceType": s.flavor,
                "ChargeUnit": "HOUR",
                "UnitPrice": str(Decimal(s.price_minor_per_hour) / 100),
            }
            for s in state.inventory.stock
        ]
        return _page(d, rows, "PriceSet")

    async def describe_capacity(d: dict[str, Any], _a: str) -> Any:
        rows = [
            {"Zone": r, "InstanceType": f, "Remaining": free, "Total": total}
            for r, f, free, total in state.capacity()
        ]
        return _page(d, rows, "CapacitySet")

    async def describe_quota(d: dict[str, Any], _a: str) -> Any:
        rows = [
            {"Zone": r, "Resource": "vcpus", "Limit": limit, "Used": used}
            for r, limit, used in state.quotas()
        ]
        return _page(d, rows, "QuotaSet")

    async def describe_usage(_d: dict[str, Any], _a: str) -> Any:
        rows = [
            {
                "Zone": r.id,
                "CpuUsagePercent": state.utilisation_permille(r.id) // 10,
                "MemFreePercent": 100 - state.utilisation_permille(r.id) // 10,
                "NetFreeMbps": 50_000,
            }
            for r in state.inventory.regions
        ]
        return {"UsageSet": rows}

    async def run_instances(d: dict[str, Any], account: str) -> Any:
        require_strings(d, ("InstanceName", "Zone", "InstanceType"))
        instance, op = state.create(account, d["InstanceName"], d["Zone"], d["InstanceType"])
        return {"InstanceId": instance.id, **job(op.id)}

    async def describe_instances(d: dict[str, Any], account: str) -> Any:
        wanted = d.get("InstanceIds")
        rows = [i for i in state.listing(account) if not wanted or i.id in wanted]
        if wanted and len(wanted) == 1 and not rows:
            state.instance(account, wanted[0])  # raises NotFound, or finds a deleted one
            rows = [state.instance(account, wanted[0])]
        return _page(d, [_instance(i) for i in rows], "InstanceSet")

    async def deploy(d: dict[str, Any], account: str) -> Any:
        try:
            program = program_from_beta(d)
        except (ValidationError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"not a valid application: {exc}") from None
        return _instance(state.deploy(account, iid(d), program))

    async def logs(d: dict[str, Any], account: str) -> Any:
        instance = state.instance(account, iid(d))
        offset, limit = d.get("Offset", 0), d.get("Limit", 65536)
        if not isinstance(offset, int) or not isinstance(limit, int) or offset < 0:
            raise InvalidRequest("Offset and Limit must be integers, Offset >= 0")
        if not 0 <= limit <= MAX_LOG_CHUNK_BYTES:
            raise InvalidRequest(f"Limit must be 0–{MAX_LOG_CHUNK_BYTES}")
        chunk = state.box(instance).logs(offset, limit)
        return {
            "LogData": chunk.data_b64,
            "Offset": chunk.offset,
            "NextOffset": chunk.next_offset,
            "TotalSize": chunk.size_bytes,
            "Complete": chunk.complete,
        }

    async def outputs(d: dict[str, Any], account: str) -> Any:
        instance = state.instance(account, iid(d))
        files = state.box(instance).kept_outputs()
        return {
            "Complete": files is not None,
            "OutputSet": [{"Path": f.path, "Size": f.size_bytes, "Sha256": f.sha256} for f in files or []],
            "Endpoint": state.storage_url,
            "Bucket": outputs_bucket(instance.id),
            "AccessToken": state.storage_token,
        }

    async def runtimes(_d: dict[str, Any], _a: str) -> Any:
        return {"FrameworkSet": sorted(state.sandbox.runtimes)}

    async def job_status(d: dict[str, Any], account: str) -> Any:
        op_id = jobs.get(str(d.get("JobId")))
        if op_id is None:
            raise InvalidRequest(f"unknown JobId {d.get('JobId')!r}")
        op = await state.operation(account, op_id)
        status = "RUNNING" if not op.done else ("FAILED" if op.error else "SUCCESS")
        return {"Status": status, "ErrorMessage": op.error or "", "Result": op.result}

    async def storage(d: dict[str, Any], account: str) -> Any:
        instance = state.instance(account, iid(d))
        return {"Endpoint": state.storage_url, "Bucket": instance.id, "AccessToken": state.storage_token}

    actions: dict[str, Callable[[dict[str, Any], str], Awaitable[Any]]] = {
        "DescribeZones": describe_zones,
        "DescribeInstanceTypes": describe_types,
        "DescribePrice": describe_price,
        "DescribeZoneCapacity": describe_capacity,
        "DescribeZoneQuota": describe_quota,
        "DescribeZoneUsage": describe_usage,
        "RunInstances": run_instances,
        "DescribeInstances": describe_instances,
        "TerminateInstances": lambda d, a: _job(state.delete(a, iid(d)).id),
        "DeployApplication": deploy,
        "StartInstances": lambda d, a: _job(state.power(a, iid(d), True, restore=bool(d.get("Restore"))).id),
        "StopInstances": lambda d, a: _job(state.power(a, iid(d), False).id),
        "CreateCheckpoint": lambda d, a: _job(state.checkpoint(a, iid(d)).id),
        "DescribeJob": job_status,
        "DescribeStorageEndpoint": storage,
        "GetInstanceLogs": logs,
        "DescribeInstanceOutputs": outputs,
        "DescribeRuntimes": runtimes,
    }

    async def _job(op_id: str) -> Any:
        return job(op_id)

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        action = request.headers.get("X-Action", "")
        try:
            account = request.headers.get("X-Access-Key", "")
            secret = secrets_by_key.get(account)
            timestamp = request.headers.get("X-Timestamp", "")
            if secret is None or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
                raise Unauthorized("unknown access key or stale timestamp")
            given = request.headers.get("X-Signature", "")
            if not hmac.compare_digest(given, signature(secret, action, timestamp, raw)):
                raise Unauthorized("signature does not match")
            if action not in actions:
                raise InvalidRequest(f"unknown action {action!r}")
            data = await json_object(request, empty_ok=True)
            await state.settle()
            result = await actions[action](data, account)
        except ConnectorError as exc:
            return beta_error(status_of(exc), str(exc))
        return web.json_response({"Response": {**result, "RequestId": uuid.uuid4().hex}})

    app.router.add_post(PATH, handle)
