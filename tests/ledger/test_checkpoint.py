"""Signed checkpoints (C2SP signed notes): signing, verifying, and refusing any change."""

from __future__ import annotations

import base64

import pytest
from nacl.signing import SigningKey

from ledger import Checkpoint, parse_checkpoint, sign_checkpoint, verify_checkpoint
from ledger.checkpoint import key_hash
from ledger.errors import AuditError
from ledger.merkle import leaf_hash

ROOT = leaf_hash(b"root")


def _note(key: SigningKey) -> bytes:
    return sign_checkpoint(Checkpoint("node-a.cpnode/ledger", 42, ROOT, 1_700_000_000_000), key).encode()


def test_round_trip(key: SigningKey) -> None:
    """A signed checkpoint verifies with the node's public key and yields origin, size, root and time."""
    checkpoint = verify_checkpoint(_note(key), key.verify_key)
    assert checkpoint == Checkpoint("node-a.cpnode/ledger", 42, ROOT, 1_700_000_000_000)


def test_format_is_a_c2sp_signed_note(key: SigningKey) -> None:
    """The note has origin, size, base64 root and time lines, a blank line, and an em-dash signature
    line whose first four bytes are the signed-note key hash."""
    text = _note(key).decode()
    body, signatures = text.split("\n\n")
    assert body.split("\n") == [
        "node-a.cpnode/ledger",
        "42",
        base64.b64encode(ROOT).decode(),
        "time_ms 1700000000000",
    ]
    assert signatures.startswith("\u2014 node-a.cpnode/ledger ")
    blob = base64.b64decode(signatures.split(" ")[2])
    assert blob[:4] == key_hash("node-a.cpnode/ledger", key.verify_key)
    assert len(blob) == 68


def test_other_key_is_refused(key: SigningKey) -> None:
    """A checkpoint signed by another key does not verify."""
    with pytest.raises(AuditError, match="not signed by the given key"):
        verify_checkpoint(_note(SigningKey.generate()), key.verify_key)


def test_every_flipped_byte_is_caught(key: SigningKey) -> None:
    """Flipping any single bit of any byte of the note makes verification fail."""
    note = _note(key)
    for position in range(len(note)):
        for bit in (0x01, 0x20):
            changed = bytearray(note)
            changed[position] ^= bit
            with pytest.raises(AuditError):
                verify_checkpoint(bytes(changed), key.verify_key)


def test_parse_without_verifying(key: SigningKey) -> None:
    """Parsing alone returns the checkpoint and its signature lines."""
    checkpoint, signatures = parse_checkpoint(_note(key))
    assert checkpoint.size == 42
    assert [name for name, _ in signatures] == ["node-a.cpnode/ledger"]


@pytest.mark.parametrize(
    "note",
    [
        b"",
        b"origin\n1\n",
        b"origin\n01\nAAAA\ntime_ms 1\n\n\xe2\x80\x94 origin AAAA\n",
        b"origin\n1\nnot base64\ntime_ms 1\n\n\xe2\x80\x94 origin AAAA\n",
    ],
)
def test_malformed_notes_are_refused(note: bytes, key: SigningKey) -> None:
    """Truncated, non-canonical or garbled notes are refused with an AuditError naming the checkpoint."""
    with pytest.raises(AuditError, match="checkpoint"):
        verify_checkpoint(note, key.verify_key)
