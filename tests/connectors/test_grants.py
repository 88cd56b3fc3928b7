"""Transfer grants: a storage endpoint takes a credential for one migration's files and time window,
and refuses it for other files, other buckets (other migrations), outside its window, or altered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from connectors.grants import Grant, GrantRefused, check_grant, grant_key, issue_grant, read_grant
from connectors.storage import StorageServer, StorageService

NOW = 1_800_000_000


def _grant(**changes: object) -> Grant:
    values: dict[str, object] = {
        "bucket": "mig-1",
        "files": frozenset({"state/a.bin"}),
        "migration": "m1",
        "audience": "a",
        "not_before": NOW - 5,
        "expires": NOW + 60,
    }
    values.update(changes)
    return Grant(**values)  # type: ignore[arg-type]


def test_a_grant_reads_back_and_its_scope_is_checked() -> None:
    """A grant reads back as issued; other buckets, other files, listing and other times are refused."""
    key = grant_key("pool-token")
    grant = read_grant(key, issue_grant(key, _grant()))
    assert grant == _grant()
    check_grant(grant, "mig-1", "state/a.bin", NOW)
    for bucket, path, now, code in (
        ("mig-2", "state/a.bin", NOW, "credential_scope"),
        ("mig-1", "state/b.bin", NOW, "credential_scope"),
        ("mig-1", None, NOW, "credential_scope"),
        ("mig-1", "state/a.bin", NOW + 60, "credential_expired"),
        ("mig-1", "state/a.bin", NOW - 6, "credential_expired"),
    ):
        with pytest.raises(GrantRefused) as refused:
            check_grant(grant, bucket, path, now)
        assert refused.value.code == code, (bucket, path, now)


def test_a_grant_of_another_key_or_altered_is_invalid() -> None:
    """A grant signed with another pool's key, or with its claims changed, is not read."""
    key = grant_key("pool-token")
    token = issue_grant(key, _grant())
    for bad in (
        issue_grant(grant_key("other-pool"), _grant()),
        token.replace(token.split(".")[1], issue_grant(key, _grant(bucket="mig-2")).split(".")[1]),
        "cpg1.x",
        "not-a-grant",
    ):
        with pytest.raises(GrantRefused) as refused:
            read_grant(key, bad)
        assert refused.value.code == "credential_invalid"
    with pytest.raises(ValueError, match="window"):
        issue_grant(key, _grant(expires=NOW - 10))


@pytest.fixture(name="endpoint")
async def fixture_endpoint(tmp_path: Path) -> AsyncIterator[tuple[str, list[float]]]:
    """A storage endpoint (token `tok`) with buckets mig-1 and mig-2 and a settable clock."""
    for name in ("mig-1", "mig-2"):
        (tmp_path / name).mkdir()
    clock = [float(NOW)]
    service = StorageService(
        "tok",
        lambda name: tmp_path / name if name in ("mig-1", "mig-2") else None,
        clock=lambda: clock[0],
    )
    server = StorageServer(service)
    url = await server.start()
    yield f"{url}/storage/v1", clock
    await server.close()


async def test_the_storage_endpoint_enforces_a_grant(endpoint: tuple[str, list[float]]) -> None:
    """A granted file is written; another file, another migration's bucket, a listing, an expired
    grant and a forged one are refused with their codes, and nothing is written for them."""
    base, clock = endpoint
    token = issue_grant(grant_key("tok"), _grant())
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.put(f"{base}/mig-1/state/a.bin", data=b"hello") as r:
            assert r.status == 201, await r.text()
        for url, status, code in (
            (f"{base}/mig-1/state/other.bin", 403, "credential_scope"),
            (f"{base}/mig-2/state/a.bin", 403, "credential_scope"),
        ):
            async with session.put(url, data=b"x") as r:
                assert (r.status, (await r.json())["error"]) == (status, code), url
        async with session.get(f"{base}/mig-1") as r:
            assert (r.status, (await r.json())["error"]) == (403, "credential_scope")
        clock[0] = NOW + 61
        async with session.put(f"{base}/mig-1/state/a.bin", data=b"late") as r:
            assert (r.status, (await r.json())["error"]) == (401, "credential_expired")
        forged = issue_grant(grant_key("guess"), _grant())
        async with session.put(
            f"{base}/mig-1/state/a.bin", data=b"x", headers={"Authorization": f"Bearer {forged}"}
        ) as r:
            assert (r.status, (await r.json())["error"]) == (401, "credential_invalid")
        async with session.get(f"{base}/mig-1", headers={"Authorization": "Bearer tok"}) as r:
            files = (await r.json())["files"]
    assert [(f["path"], f["size_bytes"]) for f in files] == [("state/a.bin", 5)]
