"""The node's identity on disk: the private key file and the public keyring beside it.

`keys/node.key` holds the active Ed25519 key as PKCS#8 PEM (mode 0600). `keys/keyring.json` holds
only public facts: when the active key became valid, and the retired keys (kept so documents they
signed still verify). A secret file (the key, the admin token) that group or others can write, or
that sits in a folder others can write without the sticky bit (so anyone could replace it), is
refused; one they can read is used with a warning (`check_secret_file`).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from federation.errors import KeyFormatError
from federation.keydoc import KeyRecord, active_record, build_key_document, endorse
from federation.keys import fingerprint, key_id, load_private_key_pem, private_key_pem, public_key_text
from node.config import Settings

log = logging.getLogger("cpnode.identity")
KEYRING_NAME = "keyring.json"
# How often a running node looks at its key file for a rotation: at most once a second, so
# `cpnode keys rotate` is noticed within ROTATION_CHECK_S (one stat instead of several per order).
ROTATION_CHECK_S = 1.0
# (config folder, key file as configured, the loaded file's mtime) -> monotonic time of the last look.
_last_checked: dict[tuple[Path, str, int], float] = {}


class IdentityError(RuntimeError):
    """The node's key cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class Identity:
    """Who this node is: its name and signing key, plus the public history of its keys."""

    name: str
    signing_key: SigningKey
    active_since_ts: int
    retired: tuple[KeyRecord, ...] = field(default=())
    # The previous key's endorsement of this one (set by `cpnode keys rotate`).
    endorsement: Mapping[str, str] | None = None
    # When the key file was read, so a running node notices a rotation.
    loaded_mtime_ns: int = field(default=0, compare=False)

    @property
    def key_id(self) -> str:
        """`ed25519:<16 chars>` of the active key."""
        return key_id(self.signing_key.verify_key)

    @property
    def public_key(self) -> str:
        """`ed25519:<base64url>` of the active key."""
        return public_key_text(self.signing_key.verify_key)

    @property
    def fingerprint(self) -> str:
        """`SHA256:...` of the active key."""
        return fingerprint(self.signing_key.verify_key)

    def key_document(self, now_ts: int, validity_s: int) -> dict[str, Any]:
        """The self-signed key document, valid from `now_ts` for `validity_s` seconds."""
        return build_key_document(
            self.name,
            self.signing_key,
            self.active_since_ts,
            self.retired,
            now_ts,
            validity_s,
            self.endorsement,
        )

    def records(self) -> dict[str, KeyRecord]:
        """Every key this node has had, active and retired, by key id."""
        active = active_record(self.signing_key, self.active_since_ts, self.endorsement)
        return {active.kid: active, **{record.kid: record for record in self.retired}}


def keyring_path(key_path: Path) -> Path:
    """The public keyring file that sits beside a key file."""
    return key_path.with_name(KEYRING_NAME)


def check_secret_file(path: Path, what: str = "key file", allow_group_read: bool = False) -> None:
    """Refuse (IdentityError) a secret file others could write or replace; warn if others can read it.

    Raises FileNotFoundError when the file does not exist.
    """
    mode = path.stat().st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise IdentityError(
            f"{what} {path} is writable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )
    # The folder of the name given and of the file it leads to (a secret volume links one to the other).
    for folder in dict.fromkeys((path.absolute().parent, path.resolve().parent)):
        folder_mode = folder.stat().st_mode
        if folder_mode & stat.S_IWOTH and not folder_mode & stat.S_ISVTX:
            raise IdentityError(
                f"{what} {path} is in folder {folder}, which is writable by others without the sticky "
                f"bit (mode {stat.S_IMODE(folder_mode):04o}), so anyone may replace it; "
                f"run: chmod o-w {folder}"
            )
    if mode & (stat.S_IROTH | (0 if allow_group_read else stat.S_IRGRP)):
        log.warning(
            "%s %s is readable by group or others (mode %04o); run: chmod 600 %s",
            what,
            path,
            stat.S_IMODE(mode),
            path,
        )


def _read_keyring(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise IdentityError(f"keyring {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise IdentityError(f"keyring {path} must hold a JSON object")
    return data


def load_identity(settings: Settings) -> Identity:
    """Load the node's key and keyring named by the config, or raise IdentityError."""
    path = settings.path(settings.keys.path)
    try:
        check_secret_file(path, "key file", settings.keys.allow_group_read)
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"key file {path} not found (create a node with `cpnode init DIR`)") from None
    except PermissionError:
        raise IdentityError(f"key file {path} cannot be read: permission denied") from None
    except IsADirectoryError:
        raise IdentityError(f"key file {path} is a directory") from None
    try:
        signing_key = load_private_key_pem(data)
    except KeyFormatError as exc:
        raise IdentityError(f"key file {path}: {exc}") from None
    keyring = _read_keyring(keyring_path(path))
    active = keyring.get("active", {})
    since = active.get("valid_from_ts") if active.get("kid") == key_id(signing_key.verify_key) else None
    if not isinstance(since, int):
        since = int(path.stat().st_mtime)
    try:
        retired = tuple(
            KeyRecord(
                r["kid"],
                r["public_key"],
                "retired",
                r["valid_from_ts"],
                r["retired_ts"],
                r.get("endorsement"),
            )
            for r in keyring.get("retired", [])
        )
    except (KeyError, TypeError) as exc:
        raise IdentityError(f"keyring {keyring_path(path)} has a malformed retired key: {exc}") from None
    endorsement = active.get("endorsement") if active.get("kid") == key_id(signing_key.verify_key) else None
    return Identity(settings.node.name, signing_key, since, retired, endorsement, path.stat().st_mtime_ns)


def reload_if_rotated(settings: Settings, identity: Identity) -> Identity:
    """`identity`, or the one on disk if the key file changed since it was read (`cpnode keys rotate`).

    The file is looked at no more than once per ROTATION_CHECK_S; between looks `identity` is returned.
    """
    # Keyed by the configured path as written: resolving it (a Path built and joined) is left to the
    # once-a-second look, since this runs on every signed request and document.
    checked = (settings.base_dir, settings.keys.path, identity.loaded_mtime_ns)
    now = time.monotonic()
    if now - _last_checked.get(checked, -ROTATION_CHECK_S) < ROTATION_CHECK_S:
        return identity
    _last_checked[checked] = now
    try:
        mtime_ns = settings.path(settings.keys.path).stat().st_mtime_ns
    except OSError:
        return identity
    if mtime_ns == identity.loaded_mtime_ns:
        return identity
    del _last_checked[checked]  # another holder of this stale identity looks again at once
    try:
        return load_identity(settings)
    except IdentityError as exc:
        log.error("key file changed but cannot be loaded; keeping the current key: %s", exc)
        return identity


def rotate_identity(settings: Settings, now_ts: int) -> tuple[Identity, Identity]:
    """Replace the node's key with a fresh one endorsed by the old; return (old, new) identities.

    The old key is listed as retired from `now_ts` so what it signed still verifies; its private
    half is overwritten. Key file and keyring are replaced together or not at all.
    """
    old = load_identity(settings)
    new_key = SigningKey.generate()
    retired = KeyRecord(old.key_id, old.public_key, "retired", old.active_since_ts, now_ts, old.endorsement)
    endorsement = endorse(old.name, new_key.verify_key, now_ts, old.signing_key)
    new = Identity(old.name, new_key, now_ts, (retired, *old.retired), endorsement)
    path = settings.path(settings.keys.path)
    keyring = json.dumps(keyring_json(new), indent=2).encode() + b"\n"
    write_files_together({path: (private_key_pem(new_key), 0o600), keyring_path(path): (keyring, 0o644)})
    return old, new


def keyring_json(identity: Identity) -> dict[str, Any]:
    """The public keyring content describing `identity`."""
    return {
        "active": {
            "kid": identity.key_id,
            "public_key": identity.public_key,
            "valid_from_ts": identity.active_since_ts,
            **({"endorsement": dict(identity.endorsement)} if identity.endorsement else {}),
        },
        "retired": [record.to_json() for record in identity.retired],
    }


def write_files_together(files: dict[Path, tuple[bytes, int]]) -> None:
    """Write each file (content, mode) to a temporary sibling, fsync, then rename them all into
    place; if any write fails, none of the files is replaced."""
    staged: list[tuple[Path, Path]] = []
    try:
        for target, (content, mode) in files.items():
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            staged.append((tmp, target))
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def new_identity_files(name: str, key_path: Path) -> tuple[Identity, dict[Path, tuple[bytes, int]]]:
    """A fresh identity and the files that store it (key 0600, public keyring 0644), not yet written."""
    signing_key = SigningKey.generate()
    identity = Identity(name, signing_key, int(time.time()))
    keyring = json.dumps(keyring_json(identity), indent=2).encode() + b"\n"
    return identity, {
        key_path: (private_key_pem(signing_key), 0o600),
        keyring_path(key_path): (keyring, 0o644),
    }
