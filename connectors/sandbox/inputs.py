"""A program's input files: checked against the pool's policy at deploy, fetched and verified at start.

Only `http(s)://` URLs are fetched, and `file://` URLs under directories the pool's operator lists
(`input_roots`; none by default, so a task can never read the pool host's files). Every input is
bounded by its declared size and the pool's `max_input_bytes`: a body longer than declared stops
the download at once. A fetched file whose size or SHA-256 differs is an `input_mismatch`; a URL
that cannot be read is `input_unavailable`. Each file is written to a temporary name in the work
directory and renamed into place, so a program never sees half an input, and a symlink it left in
the work directory on an earlier run is replaced, never followed. A file already in place with the
right size and hash (a restarted run) is not fetched again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiohttp

from connectors.contract import InputFile
from connectors.errors import InvalidRequest

_CHUNK = 1 << 20
InputReason = Literal["input_mismatch", "input_unavailable"]


@dataclass(frozen=True)
class InputPolicy:
    """What a pool lets programs fetch: size caps, file roots, and how long a fetch may take."""

    max_input_bytes: int = 1 << 30
    max_total_bytes: int = 4 << 30
    input_roots: tuple[Path, ...] = field(default=())
    fetch_timeout_s: float = 600.0


class InputProblem(Exception):
    """An input could not be put in place; `reason` is the instance's end reason."""

    def __init__(self, reason: InputReason, message: str) -> None:
        super().__init__(message)
        self.reason: InputReason = reason


def _file_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidRequest(f"file URL {url!r} names a host; only local files are allowed")
    return Path(unquote(parts.path))


def _under_roots(path: Path, roots: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def check_inputs(inputs: Sequence[InputFile], policy: InputPolicy) -> None:
    """Refuse (InvalidRequest) inputs this pool will not fetch: schemes, file roots, sizes."""
    total = 0
    for index, item in enumerate(inputs):
        where = f"inputs.{index}"
        if item.size_bytes > policy.max_input_bytes:
            raise InvalidRequest(
                f"{where}: {item.size_bytes} bytes is over this pool's limit of {policy.max_input_bytes}"
            )
        total += item.size_bytes
        if item.url.startswith("file://"):
            path = _file_path(item.url)
            if not policy.input_roots or not _under_roots(path, policy.input_roots):
                raise InvalidRequest(f"{where}: this pool does not read local files from {str(path)!r}")
        elif not item.url.startswith(("http://", "https://")):
            raise InvalidRequest(f"{where}: only http(s) URLs are fetched, got {item.url[:40]!r}")
    if total > policy.max_total_bytes:
        raise InvalidRequest(
            f"inputs total {total} bytes, over this pool's limit of {policy.max_total_bytes}"
        )


def _target(work: Path, item: InputFile) -> Path:
    target = work / item.path
    parent = target.parent.resolve()
    if not parent.is_relative_to(work.resolve()):
        raise InputProblem(
            "input_unavailable", f"{item.path}: its directory leads outside the work directory"
        )
    return target


def _matches(path: Path, item: InputFile) -> bool:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size != item.size_bytes:
            return False
    except OSError:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest() == item.sha256


def _verify(item: InputFile, size: int, digest: str) -> None:
    if size != item.size_bytes:
        raise InputProblem(
            "input_mismatch", f"{item.path}: {size} bytes arrived, {item.size_bytes} were declared"
        )
    if digest != item.sha256:
        raise InputProblem("input_mismatch", f"{item.path}: SHA-256 {digest} differs from the declared one")


def _copy_file(item: InputFile, source: Path, temporary: Path) -> None:
    digest, size = hashlib.sha256(), 0
    try:
        with source.open("rb") as reader, temporary.open("wb") as writer:
            for block in iter(lambda: reader.read(_CHUNK), b""):
                size += len(block)
                if size > item.size_bytes:
                    break
                digest.update(block)
                writer.write(block)
    except OSError as exc:
        raise InputProblem(
            "input_unavailable", f"{item.path}: cannot read {source}: {exc.strerror}"
        ) from None
    _verify(item, size, digest.hexdigest())


async def _download(session: aiohttp.ClientSession, item: InputFile, temporary: Path) -> None:
    digest, size = hashlib.sha256(), 0
    try:
        async with session.get(item.url, allow_redirects=False) as response:
            if response.status != 200:
                raise InputProblem("input_unavailable", f"{item.path}: {item.url} answered {response.status}")
            with temporary.open("wb") as writer:
                async for block in response.content.iter_chunked(_CHUNK):
                    size += len(block)
                    if size > item.size_bytes:
                        break  # longer than declared: a mismatch, whatever else follows
                    digest.update(block)
                    writer.write(block)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise InputProblem("input_unavailable", f"{item.path}: {item.url} failed: {exc}") from None
    _verify(item, size, digest.hexdigest())


async def fetch_inputs(inputs: Sequence[InputFile], work: Path, policy: InputPolicy) -> None:
    """Put every input in `work`, verified; raise InputProblem at the first one that fails."""
    if not inputs:
        return
    timeout = aiohttp.ClientTimeout(total=policy.fetch_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for item in inputs:
            target = _target(work, item)
            if await asyncio.to_thread(_matches, target, item):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
            try:
                if item.url.startswith("file://"):
                    await asyncio.to_thread(_copy_file, item, _file_path(item.url), temporary)
                else:
                    await _download(session, item, temporary)
                os.replace(temporary, target)
            finally:
                temporary.unlink(missing_ok=True)
