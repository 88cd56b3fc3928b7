"""Signed checkpoints: the ledger's Merkle root at a size and time, as a C2SP signed note.

Format (C2SP tlog-checkpoint inside a C2SP signed-note, so standard tooling can read it):

    <origin>\\n
    <tree size, decimal>\\n
    <root hash, standard base64>\\n
    time_ms <UTC epoch milliseconds when it was signed>\\n
    \\n
    — <key name> <base64(key hash (4 bytes) || Ed25519 signature (64 bytes))>\\n

The signature covers the note text: every line before the blank line, newlines included. The key
hash is SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4] (signed-note Ed25519). The key
name is the origin. Parsing is strict: one byte form per checkpoint, so a flipped byte never
passes silently (base64 is re-encoded and compared, numbers have no leading zeros).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ledger.errors import AuditError
from ledger.merkle import HASH_SIZE

SIGNATURE_PREFIX = "\u2014 "  # em dash and space
ORIGIN_RE = re.compile(r"[\x21-\x7e]{1,255}")  # also a valid key name: no spaces, no '+'
_DECIMAL_RE = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_NOTE_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: the log called `origin` had `size` transfers with this `root` at `time_ms`."""

    origin: str
    size: int
    root: bytes
    time_ms: int

    def body(self) -> bytes:
        """The note text the signature covers."""
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\ntime_ms {self.time_ms}\n".encode("ascii")


def strict_b64decode(text: str, what: str) -> bytes:
    """Decode standard base64 that re-encodes to exactly `text`, or raise ValueError naming `what`."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"{what} is not canonical base64")
    return raw


def key_hash(name: str, key: VerifyKey) -> bytes:
    """The 4-byte signed-note key hash of an Ed25519 key under `name`."""
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + bytes(key)).digest()[:4]


def sign_checkpoint(checkpoint: Checkpoint, key: SigningKey) -> str:
    """The checkpoint as a signed note, signed by `key` under the origin as key name."""
    if not ORIGIN_RE.fullmatch(checkpoint.origin):
        raise ValueError(
            f"origin must be 1–255 printable ASCII characters without spaces: {checkpoint.origin!r}"
        )
    if len(checkpoint.root) != HASH_SIZE:
        raise ValueError("root must be a 32-byte SHA-256 hash")
    body = checkpoint.body()
    signature = key.sign(body).signature
    blob = base64.b64encode(key_hash(checkpoint.origin, key.verify_key) + signature).decode("ascii")
    return body.decode("ascii") + "\n" + f"{SIGNATURE_PREFIX}{checkpoint.origin} {blob}\n"


def _parse_body(text: str, where: str) -> Checkpoint:
    lines = text.split("\n")[:-1]
    if len(lines) != 4:
        raise AuditError(where, f"note text has {len(lines)} lines, expected 4 (origin, size, root, time_ms)")
    origin, size_text, root_text, time_line = lines
    if not ORIGIN_RE.fullmatch(origin):
        raise AuditError(where, "origin line is not valid")
    if not _DECIMAL_RE.fullmatch(size_text):
        raise AuditError(where, "tree size is not a decimal number")
    try:
        root = strict_b64decode(root_text, "root hash")
    except ValueError as exc:
        raise AuditError(where, str(exc)) from None
    if len(root) != HASH_SIZE:
        raise AuditError(where, f"root hash is {len(root)} bytes, expected {HASH_SIZE}")
    name, _, value = time_line.partition(" ")
    if name != "time_ms" or not _DECIMAL_RE.fullmatch(value):
        raise AuditError(where, "fourth line must be 'time_ms <milliseconds>'")
    return Checkpoint(origin, int(size_text), root, int(value))


def parse_checkpoint(note: bytes, where: str = "checkpoint") -> tuple[Checkpoint, list[tuple[str, bytes]]]:
    """Parse a signed note without checking signatures: the checkpoint and (key name, blob) per signature."""
    if len(note) > MAX_NOTE_BYTES:
        raise AuditError(where, f"larger than {MAX_NOTE_BYTES} bytes")
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError:
        raise AuditError(where, "not UTF-8") from None
    body, sep, signatures = text.partition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise AuditError(where, "not a signed note (text, blank line, signature lines)")
    checkpoint = _parse_body(body + "\n", where)
    if checkpoint.body() != (body + "\n").encode("utf-8"):
        raise AuditError(where, "note text is not in canonical form")
    parsed = []
    for line in signatures[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise AuditError(where, "signature line does not start with an em dash")
        name, space, blob_text = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not space or not ORIGIN_RE.fullmatch(name):
            raise AuditError(where, "signature line has no valid key name")
        try:
            blob = strict_b64decode(blob_text, "signature")
        except ValueError as exc:
            raise AuditError(where, str(exc)) from None
        if len(blob) < 5:
            raise AuditError(where, "signature is too short")
        parsed.append((name, blob))
    return checkpoint, parsed


def verify_checkpoint(note: bytes, key: VerifyKey, where: str = "checkpoint") -> Checkpoint:
    """Parse a signed note and check it carries a valid signature by `key`, or raise AuditError."""
    checkpoint, signatures = parse_checkpoint(note, where)
    body = checkpoint.body()
    for name, blob in signatures:
        if blob[:4] != key_hash(name, key):
            continue
        if len(blob) != 4 + 64:
            raise AuditError(where, "Ed25519 signature has the wrong length")
        try:
            key.verify(body, blob[4:])
        except BadSignatureError:
            raise AuditError(where, f"signature by {name} does not verify") from None
        return checkpoint
    raise AuditError(where, "not signed by the given key")
