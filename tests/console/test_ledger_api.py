"""The auditors' ledger API on a real node: a period's signed bundle downloaded as a tar.gz, the
same bundle uploaded and verified, and every bad upload refused naming what is wrong (not a bundle,
too big, tampered, a link, a name leaving the folder, the wrong key); who may call what."""

from __future__ import annotations

import datetime as dt
import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from federation.keys import public_key_text
from tests.support.tasks import Node, pool_node

THIS_MONTH = dt.datetime.now(dt.UTC).strftime("%Y-%m")


@pytest.fixture(name="node")
async def fixture_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node whose ledger holds deposits for alice and bob."""
    async with pool_node(tmp_path) as node:
        await node.call("POST", "/api/v1/consumers", {"id": "bob"})
        await node.call("POST", "/api/v1/consumers/bob/deposits", {"amount": 12_345, "id": "b1"})
        yield node


async def _export(node: Node, query: dict[str, Any], token: str | None = None) -> tuple[int, bytes, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {name: str(value) for name, value in query.items()}
    async with node.http.get("/api/v1/ledger/bundle", params=params, headers=headers) as response:
        return response.status, await response.read(), response.headers


async def _verify(
    node: Node, archive: bytes, key: str | None = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("bundle", io.BytesIO(archive), filename="bundle.tar.gz", content_type="application/gzip")
    if key is not None:
        form.add_field("key", key)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with node.http.post("/api/v1/ledger/bundles/verify", data=form, headers=headers) as response:
        return response.status, await response.json()


def _files(archive: bytes) -> dict[str, bytes]:
    """The files of a (trusted, our own) archive by plain name."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        found = {}
        for member in tar.getmembers():
            source = tar.extractfile(member)
            assert source is not None
            found[member.name.split("/")[-1]] = source.read()
        return found


def _repack(files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"bundle/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return out.getvalue()


async def test_a_period_is_exported_as_a_tar_gz_that_verifies_when_uploaded(node: Node) -> None:
    """The month's bundle downloads as one tar.gz of the bundle's files; uploaded back it verifies
    with the node's key, and its report counts the deposits' transfers."""
    status, archive, headers = await _export(node, {"period": THIS_MONTH})
    assert status == 200, archive[:300]
    assert headers["Content-Type"] == "application/gzip"
    assert f'filename="ledger-a-{THIS_MONTH}.tar.gz"' in headers["Content-Disposition"]
    files = _files(archive)
    assert {"manifest.json", "checkpoint", "transfers.jsonl", "balances.csv", "proofs.json"} <= set(files)
    assert files["transfers.jsonl"].count(b"\n") >= 2  # alice's and bob's deposits

    status, report = await _verify(node, archive)
    assert status == 200, report
    assert report["ok"] is True
    assert report["transfers"] == files["transfers.jsonl"].count(b"\n")
    assert report["origin"]
    assert "manifest.json" in report["files"]

    status, report = await _verify(node, _repack(files))  # a plain folder name inside is fine
    assert status == 200, report


async def test_bad_exports_are_refused(node: Node) -> None:
    """A malformed period, both a period and times, an empty window, unknown fields: 400."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"period": "2026-13"}, "bad_period"),
        ({"period": THIS_MONTH, "from_ms": 0}, "bad_field"),
        ({"from_ms": 10, "to_ms": 5}, "bad_window"),
        ({"from_ms": -1}, "bad_field"),
        ({"from_ms": "soon"}, "bad_field"),
        ({"month": THIS_MONTH}, "bad_field"),
    ]
    for body, code in cases:
        status, answer, _ = await _export(node, body)
        assert status == 400, (body, answer)
        assert code.encode() in answer, (body, answer)


async def test_a_tampered_or_foreign_bundle_fails_naming_the_file(node: Node) -> None:
    """A changed transfer line fails on transfers.jsonl; a missing file names it; the right bundle
    checked with another key fails on the signed checkpoint: each a 422 with the file named."""
    _, archive, _ = await _export(node, {"period": THIS_MONTH})
    files = _files(archive)

    changed = dict(files)
    changed["transfers.jsonl"] = files["transfers.jsonl"].replace(b'"amount":12345', b'"amount":12346', 1)
    assert changed["transfers.jsonl"] != files["transfers.jsonl"]
    status, answer = await _verify(node, _repack(changed))
    assert (status, answer["error"], answer["file"]) == (422, "audit_failed", "transfers.jsonl"), answer
    assert "transfers.jsonl" in answer["message"]

    missing = {name: data for name, data in files.items() if name != "balances.csv"}
    status, answer = await _verify(node, _repack(missing))
    assert (status, answer["file"]) == (422, "balances.csv"), answer

    other = public_key_text(SigningKey.generate().verify_key)
    status, answer = await _verify(node, archive, key=other)
    assert (status, answer["file"]) == (422, "checkpoint"), answer
    assert "not signed by the given key" in answer["message"]
    status, answer = await _verify(node, archive, key="not-a-key")
    assert (status, answer["error"]) == (400, "bad_key"), answer


async def test_what_is_not_a_bundle_is_refused_before_anything_is_read(node: Node) -> None:
    """Plain text, an empty archive, a symbolic link, a name leaving the folder, a nested folder, a
    second top folder: each refused with the entry named; nothing is written outside."""
    _, archive, _ = await _export(node, {"period": THIS_MONTH})
    files = _files(archive)

    status, answer = await _verify(node, b"this is not a bundle at all")
    assert (status, answer["error"], answer["file"]) == (400, "not_a_bundle", "archive"), answer
    status, answer = await _verify(node, _repack({}))
    assert (status, answer["error"]) == (400, "not_a_bundle"), answer

    link = tarfile.TarInfo("bundle/checkpoint-link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    escape = tarfile.TarInfo("../../escaped")
    escape.size = 1
    nested = tarfile.TarInfo("bundle/deeper/transfers.jsonl")
    nested.size = 1
    second = tarfile.TarInfo("other/x")
    second.size = 1
    for entry in (link, escape, nested, second):
        status, answer = await _verify(node, _repack(files, [entry]))
        assert (status, answer["error"], answer["file"]) == (422, "audit_failed", entry.name), answer
    assert not (Path(node.server.settings.base_dir).parent / "escaped").exists()

    status, answer = await _verify(node, b"", token=None)
    assert status == 400, answer


async def test_an_upload_over_the_body_limit_is_refused(node: Node) -> None:
    """An upload larger than `[http] max_body_bytes` is a 413, whether its length is declared or
    it arrives in chunks."""
    limit = node.server.settings.http.max_body_bytes
    status, answer = await _verify(node, b"\0" * (limit + 1))
    assert (status, answer["error"]) == (413, "body_too_large"), answer

    boundary = "cpnodeboundary"

    async def chunks() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="bundle"; filename="b.tgz"\r\n'
            "Content-Type: application/gzip\r\n\r\n"
        ).encode()
        for _ in range(limit // 65536 + 2):
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    async with node.http.post(
        "/api/v1/ledger/bundles/verify",
        data=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    ) as response:
        assert response.status == 413, await response.text()


async def test_who_may_export_verify_and_reconcile(node: Node) -> None:
    """An auditor exports, verifies and reads reconciliations but may not run one; a consumer may
    do none of it."""
    _, user = await node.call("POST", "/api/v1/users", {"name": "ann", "role": "auditor"})
    auditor = user["token"]
    _, token = await node.call("POST", "/api/v1/consumers/alice/tokens")
    consumer = token["token"]

    status, archive, _ = await _export(node, {"period": THIS_MONTH}, token=auditor)
    assert status == 200
    assert (await _verify(node, archive, token=auditor))[0] == 200
    status, listing = await node.call("GET", "/api/v1/ledger/reconciliations", token=auditor)
    assert (status, listing["reconciliations"], listing["discrepancies"]) == (200, [], []), listing
    status, answer = await node.call(
        "POST", "/api/v1/ledger/reconciliations", {"partner": "x"}, token=auditor
    )
    assert (status, answer["error"]) == (403, "forbidden_role"), answer

    for method, path in [
        ("GET", "/api/v1/ledger/bundle"),
        ("POST", "/api/v1/ledger/bundles/verify"),
        ("GET", "/api/v1/ledger/reconciliations"),
        ("POST", "/api/v1/ledger/reconciliations"),
    ]:
        status, answer = await node.call(method, path, {}, token=consumer)
        assert (status, answer["error"]) == (403, "admin_only"), (path, answer)


async def test_bad_reconciliation_requests_change_nothing(node: Node) -> None:
    """No partner, an unknown one, a window too long or backwards, unknown fields, a bad limit."""
    for body, status_code in [
        ({}, 400),
        ({"partner": "nobody"}, 404),
        ({"partner": "nobody", "from_ms": 0, "to_ms": 40 * 86_400_000}, 400),
        ({"partner": "nobody", "from_ms": 5, "to_ms": 1}, 400),
        ({"partner": "nobody", "when": 1}, 400),
    ]:
        status, answer = await node.call("POST", "/api/v1/ledger/reconciliations", body)
        assert status == status_code, (body, answer)
    status, answer = await node.call("GET", "/api/v1/ledger/reconciliations?limit=0")
    assert (status, answer["error"]) == (400, "bad_limit")
    _, listing = await node.call("GET", "/api/v1/ledger/reconciliations")
    assert listing == {"reconciliations": [], "discrepancies": [], "open": 0}
