"""The log a task's program wrote before it migrated (node.migration), so the task's log reads
whole across moves: each earlier instance's log is copied here at the cutover, before the source
instance is deleted, and a read of the task's log sees those parts, oldest first, then the current
log (the instance's, the kept copy, or the partner's for a task that moved to a partner) as one
file with one offset space.

Layout: `<data>/tasks/<task id>/earlier/<cutover ms>-<migration id>.log`, each copied under a
temporary name and renamed once complete; a copy cut short is made again when the cutover's hook
runs again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from connectors.contract import LogChunk
from connectors.errors import NotFound
from node.tasks.core import Tasks
from node.tasks.keep import copy_log

EARLIER_DIR = "earlier"

CurrentLog = Callable[[int, int], Awaitable[LogChunk]]  # (offset, limit) → a slice of the current log


def earlier_dir(tasks: Tasks, task_id: str) -> Path:
    """Where the task's earlier log parts live."""
    return tasks.task_dir(task_id) / EARLIER_DIR


def earlier_parts(folder: Path) -> list[Path]:
    """The earlier log parts in `folder`, oldest first (none for a task that never moved)."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.log"))


async def keep_source_log(
    tasks: Tasks, task_id: str, migration_id: str, committed_ms: int, pool: str, instance_id: str
) -> bool:
    """Copy the migrated source instance's log as the task's next earlier part (once); False when
    the source instance is gone and there was nothing to copy."""
    target = earlier_dir(tasks, task_id) / f"{committed_ms:015d}-{migration_id}.log"
    if target.exists():
        return True
    try:
        await copy_log(tasks, pool, instance_id, target)
    except NotFound:
        return False
    return True


def _read_parts(parts: list[tuple[Path, int]], offset: int, limit: int) -> bytes:
    """Up to `limit` bytes from `offset` of the parts read as one file."""
    out = bytearray()
    start = 0
    for path, size in parts:
        if len(out) >= limit:
            break
        if offset < start + size:
            with path.open("rb") as handle:
                handle.seek(max(0, offset - start))
                out += handle.read(limit - len(out))
            offset = start + size
        start += size
    return bytes(out)


async def read_whole(folder: Path, offset: int, limit: int, current: CurrentLog) -> LogChunk:
    """A slice of a task's whole log: its earlier parts in `folder`, then `current` (read as if
    appended to them)."""
    paths = earlier_parts(folder)
    if not paths:
        return await current(offset, limit)
    parts = [(path, path.stat().st_size) for path in paths]
    before = sum(size for _, size in parts)
    if offset >= before:
        chunk = await current(offset - before, limit)
        return LogChunk.of(chunk.offset + before, chunk.data(), chunk.size_bytes + before, chunk.complete)
    data = _read_parts(parts, offset, limit)
    # The rest of the slice from the current log (a read of 0 bytes still tells its size).
    chunk = await current(0, limit - len(data))
    data += chunk.data()
    size = before + chunk.size_bytes
    return LogChunk.of(offset, data, size, chunk.complete and offset + len(data) >= size)
