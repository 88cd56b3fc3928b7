"""What a run leaves behind: its kept outputs (moved out of the work directory when it ends, listed
with sizes and hashes once) and its log (read back in bounded slices).

Only regular files are kept: a symlink among the outputs is skipped, so a program cannot make the
pool serve a host file through the outputs bucket.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from connectors.contract import MAX_LOG_CHUNK_BYTES, OutputFile
from connectors.storage import file_digest

MANIFEST = "outputs.json"


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:  # another file system: copy, then drop the original
        shutil.copyfile(source, target)
        source.unlink(missing_ok=True)


def _kept_files(work: Path, declared: str) -> list[Path]:
    source = work / declared
    if source.is_symlink() or not source.parent.resolve().is_relative_to(work.resolve()):
        return []
    if source.is_file():
        return [source]
    found: list[Path] = []
    if source.is_dir():
        for directory, _dirs, names in os.walk(source, followlinks=False):
            for name in names:
                path = Path(directory) / name
                if path.is_file() and not path.is_symlink():
                    found.append(path)
    return found


def collect_outputs(work: Path, outputs: Path, declared: Sequence[str]) -> list[OutputFile]:
    """Move the declared output paths (files, or every file under a directory) from `work` into
    `outputs`, list them with sizes and SHA-256, and store that list beside `outputs`."""
    shutil.rmtree(outputs, ignore_errors=True)
    outputs.mkdir(parents=True)
    for entry in declared:
        for path in _kept_files(work, entry):
            _move(path, outputs / path.relative_to(work))
    files = [
        OutputFile(
            path=item.relative_to(outputs).as_posix(),
            size_bytes=item.stat().st_size,
            sha256=file_digest(item),
        )
        for item in sorted(outputs.rglob("*"))
        if item.is_file() and not item.is_symlink()
    ]
    (outputs.parent / MANIFEST).write_text(json.dumps([f.model_dump() for f in files]), encoding="utf-8")
    return files


def listed_outputs(outputs: Path) -> list[OutputFile] | None:
    """The outputs a run kept, or None if it has not ended (nothing collected yet)."""
    try:
        rows = json.loads((outputs.parent / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return [OutputFile.model_validate(row) for row in rows]


def forget_outputs(outputs: Path) -> None:
    """Drop a previous run's outputs before a new run starts."""
    (outputs.parent / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(outputs, ignore_errors=True)


def read_log(log: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """At most `limit` (capped at MAX_LOG_CHUNK_BYTES) bytes of `log` from `offset`, and its size."""
    limit = max(0, min(limit, MAX_LOG_CHUNK_BYTES))
    try:
        with log.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(min(offset, size))
            return handle.read(limit), size
    except FileNotFoundError:
        return b"", 0
