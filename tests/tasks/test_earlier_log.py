"""A migrated task's log reads whole: the parts kept from its earlier instances, oldest first, then
the current log, as one file with one offset space (node.tasks.earlier_log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.contract import LogChunk
from node.tasks.earlier_log import CurrentLog, earlier_parts, read_whole

CURRENT = b"counter starting at 40\nstep 41\nstep 42\n"


def current_log(data: bytes, ended: bool) -> tuple[list[tuple[int, int]], CurrentLog]:
    """A current log as a pool serves it (complete once ended and read to its end), and the reads
    made of it."""
    reads: list[tuple[int, int]] = []

    async def read(offset: int, limit: int) -> LogChunk:
        reads.append((offset, limit))
        start = min(offset, len(data))
        piece = data[start : start + limit]
        return LogChunk.of(start, piece, len(data), ended and start + len(piece) >= len(data))

    return reads, read


def with_parts(folder: Path, *parts: bytes) -> bytes:
    """Write earlier parts (named so that they sort in the given order); their bytes together."""
    folder.mkdir(parents=True)
    for number, part in enumerate(parts):
        (folder / f"{1_700_000_000_000 + number:015d}-m{number}.log").write_bytes(part)
    (folder / "000000000000000-cut.log.part").write_bytes(b"a copy cut short is no part")
    return b"".join(parts)


async def read_all(folder: Path, read: CurrentLog, limit: int) -> tuple[bytes, list[LogChunk]]:
    """Read the whole log in slices of `limit`, as `cpnode tasks logs` does."""
    offset, data, chunks = 0, b"", []
    while True:
        chunk = await read_whole(folder, offset, limit, read)
        chunks.append(chunk)
        assert chunk.offset == offset
        data += chunk.data()
        offset = chunk.next_offset
        if not chunk.data() or offset >= chunk.size_bytes:
            return data, chunks


async def test_a_task_that_never_moved_reads_its_current_log_alone(tmp_path: Path) -> None:
    reads, read = current_log(CURRENT, ended=False)
    chunk = await read_whole(tmp_path / "none", 5, 10, read)
    assert (chunk.offset, chunk.data(), chunk.size_bytes, chunk.complete) == (
        5,
        CURRENT[5:15],
        len(CURRENT),
        False,
    )
    assert reads == [(5, 10)]
    assert earlier_parts(tmp_path / "none") == []


@pytest.mark.parametrize("limit", [1, 7, 23, 24, 60, 1 << 20])
async def test_the_earlier_parts_then_the_current_log_read_as_one_file(tmp_path: Path, limit: int) -> None:
    """Any slice size gives the same bytes: both earlier parts in order, then the current log;
    every chunk names the whole size, and only the last of an ended run is complete."""
    before = with_parts(tmp_path / "earlier", b"counter starting at 0\nstep 1\n", b"counter starting at 20\n")
    _reads, read = current_log(CURRENT, ended=True)
    data, chunks = await read_all(tmp_path / "earlier", read, limit)
    assert data == before + CURRENT
    assert {chunk.size_bytes for chunk in chunks} == {len(before) + len(CURRENT)}
    assert [chunk.complete for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    assert [p.name[-6:] for p in earlier_parts(tmp_path / "earlier")] == ["m0.log", "m1.log"]


async def test_a_slice_past_the_earlier_parts_is_the_current_log_shifted(tmp_path: Path) -> None:
    before = with_parts(tmp_path / "earlier", b"0123456789")
    reads, read = current_log(CURRENT, ended=False)
    chunk = await read_whole(tmp_path / "earlier", len(before) + 3, 5, read)
    assert (chunk.offset, chunk.data(), chunk.size_bytes) == (13, CURRENT[3:8], 10 + len(CURRENT))
    assert (chunk.next_offset, chunk.complete) == (18, False)
    assert reads == [(3, 5)]
    # Past the end: nothing, at the end (a follower polling for more).
    end = await read_whole(tmp_path / "earlier", 10_000, 5, read)
    assert (end.offset, end.data(), end.size_bytes) == (10 + len(CURRENT), b"", 10 + len(CURRENT))


async def test_a_slice_that_ends_inside_the_earlier_parts_asks_the_current_log_for_its_size(
    tmp_path: Path,
) -> None:
    with_parts(tmp_path / "earlier", b"0123456789")
    reads, read = current_log(CURRENT, ended=True)
    chunk = await read_whole(tmp_path / "earlier", 2, 4, read)
    assert (chunk.data(), chunk.size_bytes, chunk.complete) == (b"2345", 10 + len(CURRENT), False)
    assert reads == [(0, 0)]
