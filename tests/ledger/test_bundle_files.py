"""`cpnode ledger verify` reads only the bundle's own regular files: a symlink to /dev/zero, a FIFO,
a file larger than the manifest says, and manifest names that leave the folder are each a clear
verification error naming the file, and nothing outside the bundle is opened. Each check runs the
real command in a subprocess bounded in time and memory, so a regression fails instead of hanging."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from federation.keys import public_key_text
from ledger import bundle as fmt
from ledger import export_bundle, submit
from node.db import make_engine, upgrade
from tests.ledger.support import open_accounts, pending, single

ORIGIN = "node-a.cpnode/ledger"
MEMORY_LIMIT_BYTES = 2 * 1024**3


@pytest.fixture(name="bundle")
def fixture_bundle(tmp_path: Path, key: SigningKey) -> Path:
    """A freshly exported, valid audit bundle (SQLite ledger with a few transfers and an open hold)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    upgrade(engine)
    try:
        open_accounts(engine, "bank", "alice", "pool")
        submit(
            engine,
            [single("fund", "bank", "alice", 1_000), pending("h1", "alice", "pool", 300, timeout_s=600)],
            now=1_000_000,
        )
        export_bundle(engine, tmp_path / "bundle", key, ORIGIN)
    finally:
        engine.dispose()
    return tmp_path / "bundle"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def _verify(bundle: Path, key: SigningKey) -> tuple[int, dict[str, Any]]:
    """Run `cpnode ledger verify --json` on `bundle` within 30 s and 2 GiB; (exit code, answer)."""
    command = [sys.executable, "-m", "node", "ledger", "verify", str(bundle)]
    command += ["--key", public_key_text(key.verify_key), "--json"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=30, preexec_fn=_limit_memory, check=False
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {"stderr": done.stderr}


def _resign(bundle: Path, key: SigningKey, change: Any) -> None:
    """Let `change` edit the manifest's file list, then sign it again with the node's key."""
    manifest = json.loads((bundle / fmt.MANIFEST).read_bytes())
    manifest.pop("signature")
    change(manifest["files"])
    (bundle / fmt.MANIFEST).write_bytes(fmt.sign_manifest(manifest, key))


def test_valid_bundle_still_verifies(bundle: Path, key: SigningKey) -> None:
    """The untouched bundle verifies through the same command (the checks refuse nothing real)."""
    code, answer = _verify(bundle, key)
    assert (code, answer.get("ok")) == (0, True), answer


@pytest.mark.parametrize("name", [fmt.CHECKPOINT, fmt.TRANSFERS])
def test_symlink_to_dev_zero_is_refused(bundle: Path, key: SigningKey, name: str) -> None:
    """A symlink to /dev/zero in place of a bundle file is refused by name, without reading it."""
    (bundle / name).unlink()
    (bundle / name).symlink_to("/dev/zero")
    code, answer = _verify(bundle, key)
    assert (code, answer.get("file")) == (1, name), answer
    assert "symbolic link" in answer["error"]


@pytest.mark.parametrize("name", [fmt.CHECKPOINT, fmt.BALANCES])
def test_fifo_is_refused_without_hanging(bundle: Path, key: SigningKey, name: str) -> None:
    """A FIFO in place of a bundle file is refused by name at once (nobody ever writes to it)."""
    (bundle / name).unlink()
    os.mkfifo(bundle / name)
    code, answer = _verify(bundle, key)
    assert (code, answer.get("file")) == (1, name), answer
    assert "not a regular file" in answer["error"]


def test_file_larger_than_the_manifest_says_is_not_read(bundle: Path, key: SigningKey) -> None:
    """A bundle file bigger than the size its signed manifest gives is refused before it is read."""
    with (bundle / fmt.ACCOUNTS).open("ab") as handle:
        handle.truncate(64 * 1024**3)  # a sparse 64 GiB file: reading it would exhaust memory
    code, answer = _verify(bundle, key)
    assert (code, answer.get("file")) == (1, fmt.ACCOUNTS), answer
    assert "bytes" in answer["error"]


@pytest.mark.parametrize(
    "name", ["../../../../etc/hostname", "/proc/self/environ", "../outside.fifo", "sub/dir", "..", ""]
)
def test_manifest_names_stay_inside_the_bundle(bundle: Path, key: SigningKey, name: str) -> None:
    """A signed manifest listing a name that is not a plain file name of the bundle is refused,
    naming it; a FIFO outside the bundle it points at is never opened (that would hang)."""
    os.mkfifo(bundle.parent / "outside.fifo")
    _resign(bundle, key, lambda files: files.update({name: {"sha256": "0" * 64, "bytes": 1}}))
    code, answer = _verify(bundle, key)
    assert (code, answer.get("file")) == (1, fmt.MANIFEST), answer
    assert repr(name) in answer["error"]


def test_absolute_fifo_in_manifest_is_not_opened(bundle: Path, key: SigningKey) -> None:
    """An absolute path to a FIFO in the signed manifest is refused without opening it."""
    fifo = bundle.parent / "outside.fifo"
    os.mkfifo(fifo)
    _resign(bundle, key, lambda files: files.update({str(fifo): {"sha256": "0" * 64, "bytes": 1}}))
    code, answer = _verify(bundle, key)
    assert (code, answer.get("file")) == (1, fmt.MANIFEST), answer
