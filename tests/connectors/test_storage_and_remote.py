"""The storage protocol's edges, the out-of-process wire protocol under the conformance kit, and the cached micro-benchmark."""

from __future__ import annotations

import gzip
import hashlib
import secrets
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from connectors import microbench
from connectors.contract import ComputePlugin, Program
from connectors.pools.local import COUNTER_PROGRAM, LocalPool
from connectors.remote.client import RemotePlugin
from connectors.remote.server import plugin_app
from connectors.serving import start_app
from connectors.storage import StorageServer, StorageService
from connectors.testing import ComputePluginConformance


@pytest.fixture(name="storage")
async def fixture_storage(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, str], Path]]:
    """A storage endpoint with one bucket `b` in a temporary directory."""
    bucket = tmp_path / "b"
    bucket.mkdir()
    server = StorageServer(
        StorageService("tok", lambda name: bucket if name == "b" else None, max_object_bytes=1000)
    )
    url = await server.start()
    yield f"{url}/storage/v1/b", {"Authorization": "Bearer tok"}, bucket
    await server.close()


async def test_resumable_upload_refuses_gaps_and_bad_digests(
    storage: tuple[str, dict[str, str], Path],
) -> None:
    """A chunk at the wrong offset is 409 with what is held; a digest mismatch discards the upload."""
    base, auth, bucket = storage
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.put(f"{base}/f", data=b"abcd", headers={"Content-Range": "bytes 0-3/10"}) as r:
            assert r.status == 202
            assert r.headers["Range"] == "bytes=0-3"
        async with session.put(f"{base}/f", data=b"xy", headers={"Content-Range": "bytes 6-7/10"}) as r:
            assert r.status == 409
            assert r.headers["Range"] == "bytes=0-3"
        async with session.get(f"{base}/f?upload") as r:
            assert (await r.json())["received"] == 4
        bad = {"Content-Range": "bytes 4-9/10", "X-Content-SHA256": hashlib.sha256(b"nope").hexdigest()}
        async with session.put(f"{base}/f", data=b"efghij", headers=bad) as r:
            assert r.status == 422
        assert list(bucket.iterdir()) == []
        async with session.get(f"{base}/f") as r:
            assert r.status == 404


async def test_paths_sizes_and_ranges(storage: tuple[str, dict[str, str], Path]) -> None:
    """Escaping paths are 400, oversized bodies 413, and an unsatisfiable range 416."""
    base, auth, bucket = storage
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.put(f"{base}/a%2F..%2F..%2Fescape", data=b"x") as r:
            assert r.status == 400
        async with session.put(f"{base}/big", data=b"x" * 1001) as r:
            assert r.status == 413
        async with session.put(f"{base}/dir/ok.bin", data=b"0123456789") as r:
            assert r.status == 201
        async with session.get(f"{base}/dir/ok.bin", headers={"Range": "bytes=2-4"}) as r:
            assert r.status == 206
            assert await r.read() == b"234"
        async with session.get(f"{base}/dir/ok.bin", headers={"Range": "bytes=50-60"}) as r:
            assert r.status == 416
        async with session.get(base.replace("/b", "/other")) as r:
            assert r.status == 404
    assert (bucket / "dir" / "ok.bin").read_bytes() == b"0123456789"


async def test_a_file_is_served_as_itself_beside_a_compressed_sibling(
    storage: tuple[str, dict[str, str], Path],
) -> None:
    """GET of `x` answers x's bytes, never `x.gz` in its place, to a client that accepts gzip."""
    base, auth, bucket = storage
    (bucket / "x").write_bytes(b"REAL" * 10)
    (bucket / "x.gz").write_bytes(gzip.compress(b"FAKE" * 10))
    async with aiohttp.ClientSession(headers={**auth, "Accept-Encoding": "gzip, br"}) as session:
        async with session.get(f"{base}/x") as r:
            assert (r.headers.get("Content-Encoding"), await r.read()) == (None, b"REAL" * 10)
        async with session.get(f"{base}/x", headers={"Range": "bytes=4-7"}) as r:
            assert (r.status, await r.read()) == (206, b"REAL")


class TestRemoteLocalPoolConformance(ComputePluginConformance):
    """The local pool served out of process passes the same contract through the wire protocol."""

    @pytest.fixture(name="program")
    def fixture_program(self) -> Program:
        return Program(command=[sys.executable, str(COUNTER_PROGRAM)])

    @pytest.fixture(name="plugin")
    async def fixture_plugin(self, tmp_path: Path) -> AsyncIterator[ComputePlugin]:
        pool = LocalPool("remote-local", tmp_path / "pool", slots=2)
        await pool.start()
        token = secrets.token_urlsafe(24)
        runner, url = await start_app(plugin_app(pool, token))
        client = RemotePlugin("remote-local", url, token)
        await client.start()
        yield client
        await client.close()
        await runner.cleanup()
        await pool.close()


async def test_remote_refuses_a_wrong_call_token(tmp_path: Path) -> None:
    """A client with the wrong call token gets Unauthorized, not data."""
    from connectors.errors import Unauthorized

    pool = LocalPool("p", tmp_path / "pool", slots=1)
    await pool.start()
    runner, url = await start_app(plugin_app(pool, "right-token-123456"))
    client = RemotePlugin("p", url, "wrong-token-1234567")
    try:
        with pytest.raises(Unauthorized):
            await client.data_source()
    finally:
        await client.close()
        await runner.cleanup()
        await pool.close()


def test_measurement_is_short_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The micro-benchmark takes well under a second and a second call reads the cache instead of measuring."""
    # CPU time, not wall time: a busy machine stretches the wall clock but not the work done.
    started = time.process_time()
    first = microbench.cached_measurement(tmp_path / "m.json")
    assert time.process_time() - started < 1.0
    assert first.matmul_gflops > 0
    assert first.memory_gbps > 0

    def no_measuring() -> None:
        raise AssertionError("measured again instead of using the cache")

    monkeypatch.setattr(microbench, "measure", no_measuring)
    assert microbench.cached_measurement(tmp_path / "m.json") == first


def test_cli_checks_a_plugin_service_by_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cpnode plugins check URL --call-token T` runs the conformance checks against a live plugin
    service and passes; a wrong token is a clear error, and a URL without a token is a usage error."""
    import asyncio
    import json
    import threading

    from node.cli.main import main as cpnode

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    served: dict[str, object] = {}
    token = secrets.token_urlsafe(24)

    async def serve() -> None:
        pool = LocalPool("served", tmp_path / "pool", slots=2)
        await pool.start()
        runner, url = await start_app(plugin_app(pool, token))
        served.update(runner=runner, url=url, pool=pool)
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=30)
    assert ready.wait(timeout=30)
    url = str(served["url"])
    try:
        assert cpnode(["plugins", "check", url, f"--call-token={token}", "--json", "--timeout", "20"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["passed"] is True
        assert len(report["checks"]) >= 5
        assert cpnode(["plugins", "check", url, "--call-token", "wrong-token-0123456789", "--json"]) == 1
        assert "wrong call token" in capsys.readouterr().err
        assert cpnode(["plugins", "check", url]) == 2
        assert "--call-token" in capsys.readouterr().err
    finally:

        async def stop() -> None:
            await served["runner"].cleanup()  # type: ignore[attr-defined]
            await served["pool"].close()  # type: ignore[attr-defined]

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
