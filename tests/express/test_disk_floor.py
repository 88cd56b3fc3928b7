"""The express benchmark's disk floor writes the file's bytes, whole, with O_DIRECT where allowed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.bench_express import CHUNK_BYTES, disk_round


def test_disk_round_writes_the_same_bytes(tmp_path: Path) -> None:
    source, out = tmp_path / "source.bin", tmp_path / "out.bin"
    data = os.urandom(2 * CHUNK_BYTES + 12 * 4096)  # two whole chunks and a shorter last one
    source.write_bytes(data)
    assert disk_round(source, out) > 0
    assert out.read_bytes() == data


def test_disk_round_refuses_a_size_o_direct_cannot_write(tmp_path: Path) -> None:
    source, out = tmp_path / "source.bin", tmp_path / "out.bin"
    source.write_bytes(b"x" * 5000)
    with pytest.raises(ValueError, match="4 KiB"):
        disk_round(source, out)
    assert not out.exists()
