"""Keeping what a task's run left, on this node: its output files and its log, copied from the
pool before its instance is deleted, so they stay readable after the task is released.

Layout: `<data>/tasks/<task id>/outputs/<path>` (each file checked against the SHA-256 and size the
pool listed) and `<data>/tasks/<task id>/program.log`. Copies land under a temporary name and are
renamed once complete, so a copy cut short is simply made again. Outputs larger in all than
`max_output_bytes` are not kept (the task says so); the log is kept up to the pool's own cap.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from connectors.contract import MAX_LOG_CHUNK_BYTES, ComputePlugin, LogChunk, OutputFile, StorageEndpoint
from connectors.contract import relative_path as check_relative
from connectors.storage import PREFIX
from node.tasks.core import Tasks
from node.tasks.errors import TaskStateError
from node.tasks.records import Task

LOG_NAME = "program.log"
COPY_TIMEOUT_S = 600.0


def outputs_dir(tasks: Tasks, task_id: str) -> Path:
    """Where a task's kept output files live."""
    return tasks.task_dir(task_id) / "outputs"


def log_path(tasks: Tasks, task_id: str) -> Path:
    """Where a task's kept log lives."""
    return tasks.task_dir(task_id) / LOG_NAME


async def _download(
    http: aiohttp.ClientSession, storage: StorageEndpoint, item: OutputFile, target: Path
) -> None:
    """Copy one output file from the pool's storage, checking its size and SHA-256."""
    url = f"{storage.url}{PREFIX}/{storage.bucket}/{item.path}"
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    async with http.get(url, headers={"Authorization": f"Bearer {storage.token}"}) as response:
        if response.status != 200:
            raise OSError(f"the pool's storage answered {response.status} for {item.path}")
        with part.open("wb") as handle:
            async for block in response.content.iter_chunked(1 << 16):
                size += len(block)
                if size > item.size_bytes:
                    raise OSError(f"{item.path} is larger than the {item.size_bytes} bytes listed")
                digest.update(block)
                handle.write(block)
    if size != item.size_bytes or digest.hexdigest() != item.sha256:
        part.unlink(missing_ok=True)
        raise OSError(f"{item.path} does not match the size and SHA-256 the pool listed")
    os.replace(part, target)


async def keep_outputs(tasks: Tasks, task: Task) -> tuple[list[dict[str, Any]], str | None]:
    """Copy the run's output files here; (the files kept, why some were not, if so)."""
    assert task.pool is not None
    assert task.instance_id is not None
    instance_id = task.instance_id
    listed = await tasks.pool_call(task.pool, lambda p: p.outputs(instance_id))
    files = [f for f in listed.files if _inside(f.path)]
    total = sum(f.size_bytes for f in files)
    if total > tasks.settings.max_output_bytes:
        return (
            [],
            f"outputs_not_kept: {total} bytes is more than this node keeps ({tasks.settings.max_output_bytes})",
        )
    root = outputs_dir(tasks, task.id)
    timeout = aiohttp.ClientTimeout(total=COPY_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for item in files:
            target = root / item.path
            if not await asyncio.to_thread(_holds, target, item):
                await _download(http, listed.storage, item, target)
    return [f.model_dump() for f in files], None


def _inside(path: str) -> bool:
    try:
        check_relative(path)
    except ValueError:
        return False
    return True


def _holds(target: Path, item: OutputFile) -> bool:
    """Whether `target` is already the listed file (a copy made before a restart)."""
    if not target.is_file() or target.stat().st_size != item.size_bytes:
        return False
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest() == item.sha256


async def keep_log(tasks: Tasks, task: Task) -> None:
    """Copy the run's whole log here."""
    assert task.pool is not None
    assert task.instance_id is not None
    await copy_log(tasks, task.pool, task.instance_id, log_path(tasks, task.id))


async def copy_log(tasks: Tasks, pool: str, instance_id: str, target: Path) -> None:
    """Copy an instance's whole log from its pool to `target`, renamed into place once complete."""
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    offset = 0
    with part.open("wb") as handle:
        while True:
            chunk = await tasks.pool_call(pool, _log_reader(instance_id, offset))
            data = chunk.data()
            handle.write(data)
            offset = chunk.next_offset
            if not data or offset >= chunk.size_bytes:
                break
    os.replace(part, target)


def _log_reader(instance_id: str, offset: int) -> Callable[[ComputePlugin], Awaitable[LogChunk]]:
    return lambda plugin: plugin.logs(instance_id, offset, MAX_LOG_CHUNK_BYTES)


def read_kept_log(tasks: Tasks, task: Task, offset: int, limit: int) -> LogChunk:
    """A slice of a released task's kept log (empty and complete when none was kept)."""
    path = log_path(tasks, task.id)
    if not path.is_file():
        return LogChunk.of(0, b"", 0, True)
    size = path.stat().st_size
    start = min(max(0, offset), size)
    with path.open("rb") as handle:
        handle.seek(start)
        data = handle.read(max(0, min(limit, MAX_LOG_CHUNK_BYTES)))
    return LogChunk.of(start, data, size, True)


def kept_file(tasks: Tasks, task: Task, path: str) -> tuple[Path, dict[str, Any]]:
    """A kept output file of a task by its path, with its listing; TaskStateError when the run's
    outputs are not kept (yet), UnknownTaskError-like 404 via FileNotFoundError when not among them."""
    kept = task.kept_outputs()
    if kept is None:
        raise TaskStateError(
            f"task {task.id} has no kept outputs yet (it is {task.state})", code="outputs_not_ready"
        )
    entry = next((f for f in kept if f["path"] == path), None)
    if entry is None:
        raise FileNotFoundError(path)
    return outputs_dir(tasks, task.id) / path, entry
