"""Adapter plugin for the simulator's `alpha` dialect (entry point `cloudsim-alpha`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from connectors.cloudsim.adapter import CloudsimAdapter, catalogue
from connectors.cloudsim.alpha_api import alpha_program, program_from_alpha
from connectors.contract import (
    Account,
    DataSource,
    Flavor,
    Instance,
    InstanceSpec,
    LogChunk,
    OutputFile,
    Outputs,
    Price,
    Program,
    Region,
    StorageEndpoint,
    Usage,
)
from connectors.errors import Unauthorized, error_from_code

_CODES = {
    "InvalidArgument": "invalid_request",
    "Unauthenticated": "unauthorized",
    "NotFound": "not_found",
    "FailedPrecondition": "invalid_state",
    "Unavailable": "platform_error",
}
_STATES = {
    "PROVISIONING": "creating",
    "SHUTOFF": "stopped",
    "STAGING": "starting",
    "ACTIVE": "running",
    "ERROR": "failed",
    "DELETED": "deleted",
}


class AlphaPlugin(CloudsimAdapter):
    """Maps the alpha dialect (REST, camelCase, MiB, fen, page tokens, operations) onto the contract."""

    version: ClassVar[str] = "1.0"
    platform: ClassVar[str] = "cpnode-cloudsim alpha dialect (simulator)"
    _token = ""

    async def _call(self, method: str, path: str, body: Any = None, *, retry_auth: bool = True) -> Any:
        if not self._token:
            await self.ensure_account()
        status, data = await self.send(
            method,
            f"{self.url}/alpha/v1/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self._token}"},
        )
        if status == 401 and retry_auth:
            self._token = ""
            return await self._call(method, path, body, retry_auth=False)
        if status >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            code = _CODES.get(str(error.get("code")), "platform_error")
            raise error_from_code(code, f"{self.name}: {error.get('message', status)}")
        return data

    async def _pages(self, path: str, key: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        token = ""
        while True:
            page = await self._call("GET", f"{path}?pageSize=50&pageToken={token}")
            rows.extend(page[key])
            token = page.get("nextPageToken", "")
            if not token:
                return rows

    async def _operation(self, started: dict[str, Any], what: str) -> dict[str, Any]:
        op_id = started["operation"]["name"].split("/")[-1]

        async def check() -> dict[str, Any] | None:
            op = await self._call("GET", f"operations/{op_id}")
            if not op["done"]:
                return None
            if "error" in op:
                raise error_from_code(
                    _CODES.get(op["error"]["code"], "platform_error"), op["error"]["message"]
                )
            return dict(op["response"])

        return await self.poll(check, what)

    def _instance(self, server: dict[str, Any]) -> Instance:
        def ms(text: str | None) -> int | None:
            return None if text is None else round(dt.datetime.fromisoformat(text).timestamp() * 1000)

        with self.parsing("server"):
            program = server.get("program")
            reason = server.get("statusReason")
            return Instance(
                id=server["id"],
                name=server["name"],
                region_id=server["regionId"],
                flavor_id=server["flavorId"],
                state=_STATES[server["status"]],
                created_ms=int(dt.datetime.fromisoformat(server["createTime"]).timestamp() * 1000),
                program=program_from_alpha(program) if program else None,
                started_ms=ms(server.get("launchTime")),
                ended_ms=ms(server.get("terminateTime")),
                exit_code=server.get("exitCode"),
                reason=reason.lower() if reason else None,
                detail=server.get("statusMessage") or "",
            )

    async def frameworks(self) -> list[str]:
        frameworks: list[str] = (await self._call("GET", "runtimes"))["frameworks"]
        return frameworks

    async def ensure_account(self) -> Account:
        status, data = await self.send(
            "POST",
            f"{self.url}/alpha/v1/tokens",
            json={"accessKey": self.access_key, "secretKey": self.secret_key},
        )
        if status != 200:
            raise Unauthorized(f"{self.name}: the platform refused the credentials ({status})")
        self._token = str(data["token"])
        return Account(account_id=self.access_key, platform=self.platform, authenticated=True)

    async def data_source(self) -> DataSource:
        regions = await self._pages("regions", "regions")
        flavors = await self._pages("flavors", "flavors")
        prices = await self._pages("prices", "prices")
        capacity = await self._pages("capacity", "capacity")
        quotas = await self._pages("quotas", "quotas")
        metrics = (await self._call("GET", "metrics"))["metrics"]
        with self.parsing("data"):
            return catalogue(
                regions=[
                    Region(id=r["regionId"], name=r["displayName"], city=r["cityCode"]) for r in regions
                ],
                flavors=[
                    Flavor(
                        id=f["flavorId"],
                        chip_model=f["accelerator"]["model"],
                        chips=f["accelerator"]["count"],
                        cpus=f["vcpus"],
                        memory_mib=f["memoryMiB"],
                        storage_gib=f["diskGiB"],
                        network_gbps=f["bandwidthGbps"],
                    )
                    for f in flavors
                ],
                prices=[
                    Price(
                        region_id=p["regionId"],
                        flavor_id=p["flavorId"],
                        currency=p["currency"],
                        minor_per_hour=p["unitPriceFen"],
                    )
                    for p in prices
                    if p["unit"] == "HOUR"
                ],
                capacity=[(c["regionId"], c["flavorId"], c["available"], c["total"]) for c in capacity],
                vcpu_quotas=[
                    (q["regionId"], q["limit"], q["used"]) for q in quotas if q["resource"] == "vcpus"
                ],
                usage=[
                    Usage(
                        region_id=m["regionId"],
                        cpu_utilisation_permille=round(m["cpuUtilization"] * 1000),
                        free_memory_permille=round(m["memoryFreeRatio"] * 1000),
                        free_network_mbps=m["networkFreeMbps"],
                    )
                    for m in metrics
                ],
            )

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        started = await self._call(
            "POST", "servers", {"name": spec.name, "regionId": spec.region_id, "flavorId": spec.flavor_id}
        )
        return self._instance(await self._operation(started, f"creating {spec.name}"))

    async def get_instance(self, instance_id: str) -> Instance:
        return self._instance(await self._call("GET", f"servers/{instance_id}"))

    async def list_instances(self) -> list[Instance]:
        return [self._instance(s) for s in await self._pages("servers", "servers")]

    async def delete_instance(self, instance_id: str) -> Instance:
        current = await self.get_instance(instance_id)
        if current.state == "deleted":
            return current
        started = await self._call("DELETE", f"servers/{instance_id}")
        return self._instance(await self._operation(started, f"deleting {instance_id}"))

    async def deploy(self, instance_id: str, program: Program) -> Instance:
        body = alpha_program(program)
        return self._instance(await self._call("POST", f"servers/{instance_id}/actions/deploy", body))

    async def start_instance(self, instance_id: str, *, restore: bool = False) -> Instance:
        started = await self._call("POST", f"servers/{instance_id}/actions/start", {"restore": restore})
        return self._instance(await self._operation(started, f"starting {instance_id}"))

    async def stop_instance(self, instance_id: str) -> Instance:
        started = await self._call("POST", f"servers/{instance_id}/actions/stop", {})
        return self._instance(await self._operation(started, f"stopping {instance_id}"))

    async def checkpoint_seq(self, instance_id: str) -> int:
        started = await self._call("POST", f"servers/{instance_id}/actions/checkpoint", {})
        return int((await self._operation(started, f"checkpointing {instance_id}"))["seq"])

    async def storage_endpoint(self, instance_id: str) -> StorageEndpoint:
        data = await self._call("GET", f"servers/{instance_id}/storage")
        return StorageEndpoint(url=data["endpoint"], bucket=data["bucket"], token=data["token"])

    async def logs(self, instance_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        data = await self._call("GET", f"servers/{instance_id}/logs?offset={int(offset)}&limit={int(limit)}")
        with self.parsing("log answer"):
            return LogChunk(
                offset=data["offset"],
                next_offset=data["nextOffset"],
                size_bytes=data["totalBytes"],
                data_b64=data["data"],
                complete=data["complete"],
            )

    async def outputs(self, instance_id: str) -> Outputs:
        data = await self._call("GET", f"servers/{instance_id}/outputs")
        with self.parsing("outputs"):
            return Outputs(
                instance_id=instance_id,
                complete=data["complete"],
                files=[
                    OutputFile(path=f["path"], size_bytes=f["sizeBytes"], sha256=f["sha256"])
                    for f in data["files"]
                ],
                storage=StorageEndpoint(url=data["endpoint"], bucket=data["bucket"], token=data["token"]),
            )
