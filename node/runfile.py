"""Where a node's files are and what its running process records about itself: the default config
name, `data/run.json` (pid, URL, and the digest of the config file it loaded) and the admin token.

Commands that only read the config and talk to the running node use this module instead of
`node.service`, so they do not import the HTTP service, the database layer and every component.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.config import Settings

log = logging.getLogger("cpnode.service")

DEFAULT_CONFIG_NAME = "node.toml"
CONFIG_ENV = "CPNODE_CONFIG"


@dataclass(frozen=True)
class RunRecord:
    """What `data/run.json` says about the process serving a node."""

    pid: int
    url: str
    config_path: str | None = None
    config_sha256: str | None = None
    restart_needed: tuple[str, ...] = ()


def run_file(settings: Settings) -> Path:
    """`data/run.json`: the pid and URL of the process serving this node, while it runs."""
    return settings.data_dir / "run.json"


def config_digest(path: Path) -> str | None:
    """The SHA-256 of the config file's bytes (hex), or None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def read_run_record(settings: Settings) -> RunRecord | None:
    """The run file's record, or None when there is none (or it is unreadable)."""
    try:
        data: Any = json.loads(run_file(settings).read_text(encoding="utf-8"))
        return RunRecord(
            pid=int(data["pid"]),
            url=str(data["url"]),
            config_path=data.get("config_path"),
            config_sha256=data.get("config_sha256"),
            restart_needed=tuple(str(key) for key in data.get("restart_needed", ())),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_run_record(settings: Settings, record: RunRecord) -> None:
    """Write the run file atomically (a reader never sees half of it); a failure is logged."""
    path = run_file(settings)
    data = {key: value for key, value in record.__dict__.items() if value is not None}
    data["restart_needed"] = list(record.restart_needed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        temp.write_text(json.dumps(data), encoding="utf-8")
        temp.replace(path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)


def running_url(settings: Settings) -> str | None:
    """Where the node serves: the URL in `data/run.json`, else the configured address (None when
    that is port 0, which only a running process can resolve)."""
    record = read_run_record(settings)
    if record is not None:
        return record.url
    if settings.http.port == 0 and not settings.http.public_url:
        return None
    return settings.url_for_port(settings.http.port)


def read_admin_token(settings: Settings) -> str:
    """The admin token from `keys.admin_token_path`, or "" (admin routes then refuse everyone)."""
    path = settings.path(settings.keys.admin_token_path)
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        log.warning("admin token %s is missing; admin routes will refuse every request", path)
        return ""


def config_drift(settings: Settings, config_path: Path) -> str | None:
    """How the config file differs from what the running node applied (for `cpnode status`), or
    None when it does not, or no running process recorded a digest."""
    record = read_run_record(settings)
    if record is None or record.config_sha256 is None:
        return None
    notes = []
    if config_digest(config_path) != record.config_sha256:
        notes.append("the config file changed since the running node loaded it: run `cpnode reload`")
    if record.restart_needed:
        notes.append(f"changed keys that need a restart: {', '.join(record.restart_needed)}")
    return "; ".join(notes) or None
