"""Adapter plugin for the simulator's `beta` dialect (entry point `cloudsim-beta`)."""

from __future__ import annotations

import json
import time
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from connectors.chips import canonical_chip
from connectors.cloudsim.adapter import CloudsimAdapter, catalogue
from connectors.cloudsim.beta_api import REASON_CODES, beta_program, program_from_beta, signature
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
from connectors.errors import NotFound, PlatformError, error_from_code

_CODES = {
    "InvalidParameter": "invalid_request",
    "AuthFailure": "unauthorized",
    "ResourceNotFound": "not_found",
    "OperationDenied": "invalid_state",
    "ServiceUnavailable": "platform_error",
}
_REASONS = {code: reason for reason, code in REASON_CODES.items()}
_STATES = {
    "PENDING": "creating",
    "STOPPED": "stopped",
    "STARTING": "starting",
    "RUNNING": "running",
    "LAUNCH_FAILED": "failed",
    "TERMINATED": "deleted",
}


def fen_from_yuan(text: str) -> int:
    """`"224.00"` yuan → 22400 fen, exactly; refuses fractions of a fen."""
    try:
        fen = Decimal(text) * 100
    except InvalidOperation:
        raise PlatformError(f"price {text!r} is not a decimal") from None
    if fen != fen.to_integral_value() or fen < 0:
        raise PlatformError(f"price {text!r} is not a whole number of fen")
    return int(fen)


class BetaPlugin(CloudsimAdapter):
    """Maps the beta dialect (signed RPC, PascalCase, GiB, yuan strings, offset paging, jobs) onto the contract."""

    version: ClassVar[str] = "1.0"
    platform: ClassVar[str] = "cpnode-cloudsim beta dialect (simulator)"

    async def _call(self, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        raw = json.dumps(body or {}).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Action": action,
            "X-Access-Key": self.access_key,
            "X-Timestamp": timestamp,
            "X-Signature": signature(self.secret_key, action, timestamp, raw),
        }
        _status, data = await self.send("POST", f"{self.url}/beta/api", data=raw, headers=headers)
        response = data.get("Response") if isinstance(data, dict) else None
        if not isinstance(response, dict):
            raise PlatformError(f"{self.name}: malformed answer to {action}")
        if "Error" in response:
            error = response["Error"]
            raise error_from_code(
                _CODES.get(error.get("Code"), "platform_error"), f"{self.name}: {error.get('Message')}"
            )
        return response

    async def _all(self, action: str, key: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            page = await self._call(action, {**(body or {}), "Offset": len(rows), "Limit": 100})
            rows.extend(page[key])
            if len(rows) >= page["TotalCount"] or not page[key]:
                return rows

    async def _job(self, started: dict[str, Any], what: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            job = await self._call("DescribeJob", {"JobId": started["JobId"]})
            if job["Status"] == "RUNNING":
                return None
            if job["Status"] == "FAILED":
                raise error_from_code("invalid_state", f"{self.name}: {what} failed: {job['ErrorMessage']}")
            return dict(job.get("Result") or {})

        return await self.poll(check, what)

    def _instance(self, row: dict[str, Any]) -> Instance:
        with self.parsing("instance"):
            program = row.get("Program")
            reason = row.get("StateReason") or {}
            return Instance(
                id=row["InstanceId"],
                name=row["InstanceName"],
                region_id=row["Zone"],
                flavor_id=row["InstanceType"],
                state=_STATES[row["InstanceState"]],
                created_ms=int(row["CreatedTime"]) * 1000,
                program=program_from_beta(program) if program else None,
                started_ms=row.get("StartedAt"),
                ended_ms=row.get("StoppedAt"),
                exit_code=row.get("ExitCode"),
                reason=_REASONS[reason["Code"]] if reason else None,
                detail=reason.get("Message", ""),
            )

    async def frameworks(self) -> list[str]:
        frameworks: list[str] = (await self._call("DescribeRuntimes"))["FrameworkSet"]
        return frameworks

    async def ensure_account(self) -> Account:
        await self._call("DescribeZones", {"Limit": 1})  # a signed call proves the credentials
        return Account(account_id=self.access_key, platform=self.platform, authenticated=True)

    async def data_source(self) -> DataSource:
        zones = await self._all("DescribeZones", "ZoneSet")
        types = await self._all("DescribeInstanceTypes", "InstanceTypeSet")
        prices = await self._all("DescribePrice", "PriceSet")
        capacity = await self._all("DescribeZoneCapacity", "CapacitySet")
        quotas = await self._all("DescribeZoneQuota", "QuotaSet")
        usage = (await self._call("DescribeZoneUsage"))["UsageSet"]
        with self.parsing("data"):
            return catalogue(
                regions=[Region(id=z["Zone"], name=z["ZoneName"], city=z["CityCode"]) for z in zones],
                flavors=[
                    Flavor(
                        id=t["InstanceType"],
                        chip_model=canonical_chip(t["GpuModel"]),
                        chips=t["GpuCount"],
                        cpus=t["Cpu"],
                        memory_mib=t["MemoryGB"] * 1024,
                        storage_gib=t["DiskGB"],
                        network_gbps=t["BandwidthGbps"],
                    )
                    for t in types
                ],
                prices=[
                    Price(
                        region_id=p["Zone"],
                        flavor_id=p["InstanceType"],
                        minor_per_hour=fen_from_yuan(p["UnitPrice"]),
                    )
                    for p in prices
                    if p["ChargeUnit"] == "HOUR"
                ],
                capacity=[(c["Zone"], c["InstanceType"], c["Remaining"], c["Total"]) for c in capacity],
                vcpu_quotas=[(q["Zone"], q["Limit"], q["Used"]) for q in quotas if q["Resource"] == "vcpus"],
                usage=[
                    Usage(
                        region_id=u["Zone"],
                        cpu_utilisation_permille=u["CpuUsagePercent"] * 10,
                        free_memory_permille=u["MemFreePercent"] * 10,
                        free_network_mbps=u["NetFreeMbps"],
                    )
                    for u in usage
                ],
            )

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        started = await self._call(
            "RunInstances",
            {"InstanceName": spec.name, "Zone": spec.region_id, "InstanceType": spec.flavor_id},
        )
        await self._job(started, f"creating {spec.name}")
        return await self.get_instance(started["InstanceId"])

    async def get_instance(self, instance_id: str) -> Instance:
        rows = (await self._call("DescribeInstances", {"InstanceIds": [instance_id]}))["InstanceSet"]
        if not rows:
            raise NotFound(f"{self.name}: no instance {instance_id!r}")
        return self._instance(rows[0])

    async def list_instances(self) -> list[Instance]:
        return [self._instance(r) for r in await self._all("DescribeInstances", "InstanceSet")]

    async def delete_instance(self, instance_id: str) -> Instance:
        if (await self.get_instance(instance_id)).state != "deleted":
            await self._job(
                await self._call("TerminateInstances", {"InstanceId": instance_id}), "terminating"
            )
        return await self.get_instance(instance_id)

    async def deploy(self, instance_id: str, program: Program) -> Instance:
        body = {"InstanceId": instance_id, **beta_program(program)}
        return self._instance(await self._call("DeployApplication", body))

    async def start_instance(self, instance_id: str, *, restore: bool = False) -> Instance:
        await self._job(
            await self._call("StartInstances", {"InstanceId": instance_id, "Restore": restore}), "starting"
        )
        return await self.get_instance(instance_id)

    async def stop_instance(self, instance_id: str) -> Instance:
        await self._job(await self._call("StopInstances", {"InstanceId": instance_id}), "stopping")
        return await self.get_instance(instance_id)

    async def checkpoint_seq(self, instance_id: str) -> int:
        started = await self._call("CreateCheckpoint", {"InstanceId": instance_id})
        return int((await self._job(started, "checkpoint"))["seq"])

    async def storage_endpoint(self, instance_id: str) -> StorageEndpoint:
        data = await self._call("DescribeStorageEndpoint", {"InstanceId": instance_id})
        return StorageEndpoint(url=data["Endpoint"], bucket=data["Bucket"], token=data["AccessToken"])

    async def logs(self, instance_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        data = await self._call(
            "GetInstanceLogs", {"InstanceId": instance_id, "Offset": offset, "Limit": limit}
        )
        with self.parsing("log answer"):
            return LogChunk(
                offset=data["Offset"],
                next_offset=data["NextOffset"],
                size_bytes=data["TotalSize"],
                data_b64=data["LogData"],
                complete=data["Complete"],
            )

    async def outputs(self, instance_id: str) -> Outputs:
        data = await self._call("DescribeInstanceOutputs", {"InstanceId": instance_id})
        with self.parsing("outputs"):
            return Outputs(
                instance_id=instance_id,
                complete=data["Complete"],
                files=[
                    OutputFile(path=f["Path"], size_bytes=f["Size"], sha256=f["Sha256"])
                    for f in data["OutputSet"]
                ],
                storage=StorageEndpoint(
                    url=data["Endpoint"], bucket=data["Bucket"], token=data["AccessToken"]
                ),
            )
