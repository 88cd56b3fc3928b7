"""Mixed versions: a relay of this version moving a file to a storage endpoint of the older protocol
(whose upload entries had no `chunk_root` and refused unknown fields) opens the upload again in the
older form, and that endpoint proves the file by its whole-file SHA-256 as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import ValidationError

from connectors import storage
from connectors.contract import Bytes, Model, Sha256, StorageEndpoint
from connectors.manifest import ChunkBytes, UploadEntry
from connectors.storage import StorageServer, StorageService
from connectors.upload_files import UploadError
from tests.support.express import MIB, ExpressProcess, Storage, random_file, sha256_of, spec

_REAL_READ_ENTRY = storage._read_entry


class _OlderEntry(Model):
    """The upload entry of the older protocol: no `chunk_root`, unknown fields refused."""

    chunk_bytes: ChunkBytes
    size_bytes: Bytes
    sha256: Sha256
    chunks: list[Sha256]


async def _older_read_entry(request: web.Request) -> UploadEntry:
    """Read the entry as the older endpoint did: a body naming `chunk_root` is 400 `invalid_request`."""
    entry = await _REAL_READ_ENTRY(request)
    try:
        _OlderEntry.model_validate(entry.model_dump(exclude_none=True))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UploadError(400, "invalid_request", f"{first['loc'][0]}: {first['msg']}") from None
    return entry


@pytest.fixture(name="older")
async def fixture_older(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[StorageEndpoint, StorageService, Path]]:
    """A storage endpoint on 127.0.0.1 that speaks the older protocol's upload entries."""
    monkeypatch.setattr(storage, "_read_entry", _older_read_entry)
    bucket = tmp_path / "older" / "state"
    bucket.mkdir(parents=True)
    service = StorageService("older-endpoint-token", lambda name: bucket if name == "state" else None)
    server = StorageServer(service)
    url = await server.start()
    yield StorageEndpoint(url=url, bucket="state", token="older-endpoint-token"), service, bucket
    await server.close()


async def test_a_move_to_an_older_endpoint_falls_back_to_the_whole_file_hash(
    source: Storage, express: ExpressProcess, older: tuple[StorageEndpoint, StorageService, Path]
) -> None:
    """The older endpoint refuses the entry naming its chunk root; the relay opens the upload again
    without it, the move completes with the source's bytes, and the endpoint read every chunk back
    for the whole-file hash (the older check), which it does not for an entry of this version."""
    endpoint, service, bucket = older
    whole = random_file(source.bucket / "state.bin", 3 * MIB + 1000)
    async with express.client() as client:
        job = await client.create(spec(source.endpoint(), endpoint))
        done = await client.wait(job.id, timeout_s=60)
    assert done.state == "completed", done.error
    assert sha256_of(bucket / "state.bin") == whole
    assert service.uploads.read_back_chunks == 13  # 3 MiB + 1000 bytes in 256 KiB chunks
