"""Applying a changed config file to a running node (SIGHUP or `cpnode reload`).

Only keys that components read again while the node runs are applied: the logging level and its
access lines, the `[[partners]]` (URLs, keys and agreements, credit limits included) and the
`[[offers]]`. Every other changed key is reported as needing a restart and keeps its loaded value,
so a reload never leaves the node half on the old and half on the new value of one setting. A
config file that does not validate changes nothing.

The running process records in `data/run.json` the digest of the file as it applied it, and which
changed keys wait for a restart; `cpnode status` compares that digest with the file on disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from node.config import ConfigError, Settings, load_settings
from node.context import CTX, NodeContext
from node.http.errors import ApiError
from node.logs import log_access
from node.runfile import RunRecord, config_digest, read_run_record, write_run_record

log = logging.getLogger("cpnode.reload")

# Keys applied without a restart: a section ("partners") or one key of a section ("logging.level").
RELOADABLE: tuple[str, ...] = ("logging.level", "logging.access", "partners", "offers", "supervisors")


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: keys applied, changed keys that need a restart, and the file's digest."""

    applied: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)
    config_sha256: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The result as the reload API answers it."""
        return {
            "applied": self.applied,
            "restart_needed": self.restart_needed,
            "config_sha256": self.config_sha256,
        }


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """The settings that differ: `section.key` for keys of a table section, the section's name for
    lists (`partners`, `offers`, `pools`), in config order."""
    changed: list[str] = []
    for name in Settings.model_fields:
        if name == "base_dir":
            continue
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if isinstance(before, BaseModel) and isinstance(after, BaseModel):
            changed.extend(
                f"{name}.{key}"
                for key in type(before).model_fields
                if getattr(before, key) != getattr(after, key)
            )
        else:
            changed.append(name)
    return changed


def is_reloadable(key: str) -> bool:
    """Whether a changed key (as `changed_keys` names it) is applied without a restart."""
    return key in RELOADABLE


def merged_settings(old: Settings, new: Settings) -> Settings:
    """`old` with the reloadable settings taken from `new`; everything else keeps its loaded value."""
    return old.model_copy(
        update={
            "partners": new.partners,
            "offers": new.offers,
            "supervisors": new.supervisors,
            "logging": old.logging.model_copy(
                update={"level": new.logging.level, "access": new.logging.access}
            ),
        }
    )


async def reload_node(ctx: NodeContext) -> ReloadResult:
    """Read the node's config file again and apply what can be applied; ConfigError (nothing
    applied) when the file does not validate, ValueError when the node has no config file."""
    path = ctx.config_path
    if path is None:
        raise ValueError("this node was not started from a config file")
    new = await asyncio.to_thread(load_settings, path)
    digest = await asyncio.to_thread(config_digest, path)
    changed = changed_keys(ctx.settings, new)
    applied = [key for key in changed if is_reloadable(key)]
    pending = [key for key in changed if not is_reloadable(key)]
    if applied:
        ctx.settings = merged_settings(ctx.settings, new)
        logging.getLogger("cpnode").setLevel(ctx.settings.logging.level.upper())
        log_access(ctx.settings.logging.access)
        for hook in ctx.reload_hooks:
            await hook(ctx.settings)
    result = ReloadResult(applied, sorted(set(pending) | set(ctx.restart_needed)), digest)
    ctx.restart_needed = result.restart_needed
    record_loaded_config(ctx, digest)
    log.info(
        "config reloaded from %s: applied %s; needs a restart: %s",
        path,
        ", ".join(applied) or "nothing",
        ", ".join(result.restart_needed) or "nothing",
    )
    return result


def record_loaded_config(ctx: NodeContext, digest: str | None) -> None:
    """Record in the run file the digest of the config this process applied (if the run file is
    this process's own)."""
    record = read_run_record(ctx.settings)
    if record is None or record.pid != os.getpid():
        return
    write_run_record(
        ctx.settings,
        RunRecord(
            pid=record.pid,
            url=record.url,
            config_path=str(ctx.config_path) if ctx.config_path else None,
            config_sha256=digest,
            restart_needed=tuple(ctx.restart_needed),
        ),
    )


async def reload_api(request: web.Request) -> web.Response:
    """`POST /api/v1/reload` (admin): apply the config file again; 422 `bad_config` with the
    problems (nothing applied) when it does not validate."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    try:
        result = await reload_node(ctx)
    except ConfigError as exc:
        raise ApiError(422, "bad_config", str(exc)) from None
    except ValueError as exc:
        raise ApiError(409, "no_config_file", str(exc)) from None
    return web.json_response(result.as_json())


def install(app: web.Application, ctx: NodeContext) -> None:
    """Serve `POST /api/v1/reload` in processes with the `api` role."""
    if "api" in ctx.roles:
        app.router.add_post("/api/v1/reload", reload_api)
