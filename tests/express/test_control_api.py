"""The express's control API: authentication, refusals that change nothing, idempotent creation,
progress events, and that the control connection carries JSON only, never state bytes."""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.express import ExpressClient, ExpressRefused
from tests.express.faultproxy import FaultProxy
from tests.support.express import MIB, ExpressProcess, Storage, random_file, sha256_of, spec, wait_state


async def raw(
    express: ExpressProcess, method: str, tail: str, token: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    """One call to the control API with `token` (the right one by default)."""
    headers = {"Authorization": f"Bearer {express.token if token is None else token}"}
    url = f"{express.url}/express/v1{tail}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, **kwargs) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_every_call_needs_the_token(express: ExpressProcess) -> None:
    """Without the bearer token, or with a wrong one, every call is 401."""
    for token in ("", "wrong-token-0123456789"):
        for method, tail in (
            ("GET", "/health"),
            ("GET", "/jobs"),
            ("POST", "/jobs"),
            ("GET", "/jobs/x/events"),
        ):
            status, body = await raw(express, method, tail, token=token)
            assert (status, body["error"]) == (401, "unauthorized")


async def test_bad_requests_are_4xx_and_create_nothing(
    source: Storage, destination: Storage, express: ExpressProcess, client: ExpressClient
) -> None:
    """Malformed specs, unknown jobs, bad rate changes and oversized bodies are clear 4xx; no job is
    stored by any of them."""
    good = spec(source.endpoint(), destination.endpoint()).model_dump(mode="json", exclude_none=True)
    bad_bodies: list[Any] = [
        {**good, "workers": 0},
        {**good, "chunk_bytes": 100},
        {**good, "id": "../x"},
        {**good, "source": {"url": "ftp://x", "bucket": "b", "token": "t"}},
        {
            **good,
            "manifest": {
                "chunk_bytes": 4096,
                "files": [{"path": "a", "size_bytes": 5000, "sha256": "0" * 64, "chunks": []}],
            },
        },
        {**good, "unknown": 1},
        [1, 2],
    ]
    for body in bad_bodies:
        status, answer = await raw(express, "POST", "/jobs", json=body)
        assert (status, answer["error"]) == (400, "invalid_request"), body
    assert (await raw(express, "POST", "/jobs", data=b"{nope"))[0] == 400
    status, answer = await raw(
        express, "POST", "/jobs", json={**good, "workers": 64, "chunk_bytes": 64 * MIB}
    )
    assert (status, answer["error"]) == (409, "invalid_state")
    assert (await raw(express, "POST", "/jobs", data=io.BytesIO(b"x" * (17 * MIB))))[0] == 413
    for method, tail in (("GET", "/jobs/nope"), ("POST", "/jobs/nope/cancel"), ("GET", "/jobs/nope/events")):
        assert (await raw(express, method, tail))[0] == 404
    assert await client.jobs() == []

    random_file(source.bucket / "f.bin", 1000)
    job = await client.create(spec(source.endpoint(), destination.endpoint()))
    for body in (
        {"rate_cap_bytes_per_s": -1},
        {"rate_cap_bytes_per_s": "fast"},
        {"rate": 1},
        [],
        {"rate_cap_bytes_per_s": True},
    ):
        status, answer = await raw(express, "PATCH", f"/jobs/{job.id}", json=body)
        assert (status, answer["error"]) == (400, "invalid_request"), body
    await wait_state(client, job.id, {"completed"})
    assert (await client.job(job.id)).rate_cap_bytes_per_s == 0
    with pytest.raises(ExpressRefused) as refused:
        await client.cancel(job.id)
    assert (refused.value.status, refused.value.code) == (409, "invalid_state")


async def test_create_with_an_id_is_idempotent(
    source: Storage, destination: Storage, client: ExpressClient
) -> None:
    """The same id and request twice is one job; the same id with another request is 409."""
    random_file(source.bucket / "f.bin", 100_000)
    first = await client.create(spec(source.endpoint(), destination.endpoint(), id="migration-7"))
    again = await client.create(spec(source.endpoint(), destination.endpoint(), id="migration-7"))
    assert (first.id, again.id) == ("migration-7", "migration-7")
    assert len(await client.jobs()) == 1
    with pytest.raises(ExpressRefused) as refused:
        await client.create(spec(source.endpoint(), destination.endpoint(), id="migration-7", workers=2))
    assert refused.value.status == 409
    done = await client.wait("migration-7", timeout_s=30)
    assert (done.state, done.files) == ("completed", ["f.bin"])


async def test_events_come_on_every_change_and_at_least_every_second(
    source: Storage, destination: Storage, client: ExpressClient
) -> None:
    """A slow single-worker job shows every chunk in its events; a job waiting out a long backoff
    still gets an event at least every second, and the stream ends with the finished state."""
    random_file(source.bucket / "f.bin", 16 * (256 << 10))
    job = await client.create(
        spec(source.endpoint(), destination.endpoint(), workers=1, rate_cap_bytes_per_s=MIB)
    )
    seen = [view.progress.chunks_done async for view in client.events(job.id)]
    assert set(range(1, 17)) <= set(seen)
    assert seen[-1] == 16

    closed = FaultProxy(destination.port)
    await closed.start()
    await closed.refuse()
    slow = await client.create(
        spec(
            source.endpoint(),
            destination.endpoint(closed.url),
            max_attempts=2,
            backoff_base_ms=4000,
            backoff_max_ms=4000,
        )
    )
    stamps: list[float] = []
    states: list[str] = []
    async for view in client.events(slow.id):
        stamps.append(time.monotonic())
        states.append(view.state)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert states[-1] == "failed"
    assert len(stamps) >= 3
    # Sent every 0.9 s at the latest; the backoff alone would leave 2–4 s without an event. The
    # margin is for a loaded machine.
    assert max(gaps) < 1.8


async def test_control_connection_carries_no_state_bytes(
    source: Storage, destination: Storage, express: ExpressProcess
) -> None:
    """Driving a whole 16 MiB move through the control API (create, follow events, read the result)
    moves a few kilobytes over the control connection, while the state bytes go express → destination."""
    whole = random_file(source.bucket / "state.bin", 16 * MIB)
    control = FaultProxy(int(express.url.rsplit(":", 1)[1]))
    to_destination = FaultProxy(destination.port)
    await control.start()
    await to_destination.start()
    try:
        async with express.client(control.url) as client:
            job = await client.create(spec(source.endpoint(), destination.endpoint(to_destination.url)))
            done = await client.wait(job.id, timeout_s=60)
        assert done.state == "completed"
        assert sha256_of(destination.bucket / "state.bin") == whole
        control_bytes = control.bytes_up + control.bytes_down
        assert control_bytes < 16 * MIB // 100
        assert to_destination.bytes_up >= 16 * MIB
    finally:
        await control.close()
        await to_destination.close()


def test_express_command_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cpnode express` with a malformed --listen or a too-short token exits 2 with the reason and
    creates nothing."""
    from node.cli.main import main as cpnode

    assert cpnode(["express", "--listen", "nowhere", "--token-file", str(tmp_path / "t")]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
    (tmp_path / "short").write_text("abc\n")
    state = tmp_path / "jobs.json"
    assert cpnode(["express", "--token-file", str(tmp_path / "short"), "--state-file", str(state)]) == 2
    assert "shorter than 16" in capsys.readouterr().err
    assert not state.exists()
