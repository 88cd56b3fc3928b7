"""The running node: opens the database, loads the identity, composes components, serves HTTP.

Start-up order: database reachable → migrations → identity → app with components → bind → jobs.
Shutdown: stop accepting, let in-flight requests finish within `http.shutdown_grace_s`, stop the
scheduler (releasing its leases), close the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import Engine

from node.components import active_components
from node.config import Settings
from node.context import CTX, NodeContext
from node.db import DatabaseError, database_unavailable, dispose_when_idle, open_database
from node.http.access import access
from node.http.core_routes import scheduler_expected
from node.http.guard import GuardedSite, connection_cap
from node.http.middleware import make_middlewares
from node.identity import IdentityError, check_secret_file, load_identity
from node.logs import LoopErrorLog
from node.metrics import Metrics
from node.reload import ReloadResult, reload_node
from node.roles import ALL_ROLES
from node.runfile import RunRecord, config_digest, run_file, write_run_record
from node.runfile import read_admin_token as read_admin_token  # re-exported: callers of the service use it
from node.runfile import running_url as running_url
from node.scheduler import JobScheduler

log = logging.getLogger("cpnode.service")


class NodeStartError(RuntimeError):
    """The node cannot start; the message says why (database, key, port...)."""


def _lost_database(exc: Exception, doing: str) -> NodeStartError | None:
    """A NodeStartError when `exc` says the database went away while the node was `doing` something
    (a clear one-line exit, as when it is unreachable from the start); None for any other error."""
    reason = database_unavailable(exc)
    if reason is None:
        return None
    return NodeStartError(f"the database became unavailable while {doing}: {reason}")


async def _stop_started(runner: web.AppRunner) -> None:
    """Stop the components of a runner whose start failed part-way (aiohttp unwinds the cleanup
    contexts that were entered); a failure while stopping them is logged, the start's error wins."""
    try:
        await runner.cleanup()
    except Exception as exc:  # the start's own error is the one to report
        log.warning("stopping the components that had started failed: %s", exc)


async def close_database(engine: Engine, grace_s: float) -> None:
    """Close the database of a node whose components have stopped: the ledger's group committer
    (its thread holds a PostgreSQL connection between transactions), then the engine once the calls
    still finishing on threads have given their connections back (`grace_s` at most for each)."""
    from ledger import committer_for

    await asyncio.to_thread(committer_for(engine).close, grace_s)
    await dispose_when_idle(engine, grace_s)


def load_admin_token(settings: Settings) -> str:
    """The admin token for a starting node: its file checked like the node key's (IdentityError
    when others could write or replace it, a warning when they can read it), then read."""
    path = settings.path(settings.keys.admin_token_path)
    with contextlib.suppress(FileNotFoundError):  # read_admin_token warns that admin routes refuse all
        check_secret_file(path, "admin token file", settings.keys.allow_group_read)
    return read_admin_token(settings)


def build_app(ctx: NodeContext) -> web.Application:
    """The aiohttp application of a node with the components its roles include."""
    app = web.Application(
        client_max_size=ctx.settings.http.max_body_bytes,
        middlewares=[
            *make_middlewares(
                ctx.metrics, ctx.settings.http.max_body_bytes, ctx.settings.http.body_timeout_s
            ),
            access,
        ],
    )
    app[CTX] = ctx
    components = active_components(ctx.roles)
    for component in components:
        if component.install is not None:
            component.install(app, ctx)
    if "scheduler" in ctx.roles:
        for component in components:
            if component.schedule is not None:
                component.schedule(ctx)

    async def scheduler_lifecycle(_app: web.Application) -> AsyncIterator[None]:
        if scheduler_expected(ctx):
            ctx.scheduler.start()
        yield
        await ctx.scheduler.stop(timeout_s=ctx.settings.http.shutdown_grace_s)

    app.cleanup_ctx.append(scheduler_lifecycle)
    return app


class NodeServer:
    """One node serving HTTP in the current event loop; `start()` then `stop()`."""

    def __init__(
        self, settings: Settings, roles: frozenset[str] = ALL_ROLES, config_path: Path | None = None
    ) -> None:
        self.settings = settings
        self.roles = roles
        self.config_path = config_path
        self.ctx: NodeContext | None = None
        self.url = ""
        self.site: GuardedSite | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Open everything and bind the socket; return the base URL (with the real port)."""
        settings = self.settings
        try:
            engine = await asyncio.to_thread(open_database, settings)
        except DatabaseError as exc:
            raise NodeStartError(str(exc)) from None
        except Exception as exc:
            if (error := _lost_database(exc, "migrating its schema")) is not None:
                raise error from None
            raise
        try:
            identity = await asyncio.to_thread(load_identity, settings)
            admin_token = await asyncio.to_thread(load_admin_token, settings)
        except IdentityError as exc:
            engine.dispose()
            raise NodeStartError(str(exc)) from None
        metrics = Metrics()
        replica_id = f"{settings.node.name}/{uuid.uuid4().hex[:12]}"
        scheduler = JobScheduler(engine, replica_id, settings.scheduler.lease_ttl_s, metrics)
        self.ctx = ctx = NodeContext(
            settings=settings,
            identity=identity,
            engine=engine,
            scheduler=scheduler,
            metrics=metrics,
            roles=self.roles,
            replica_id=replica_id,
            admin_token=admin_token,
            started_ts=int(time.time()),
            config_path=self.config_path,
        )
        app = build_app(ctx)
        http = settings.http
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=http.shutdown_grace_s,
            lingering_time=1.0,
            keepalive_timeout=http.header_timeout_s,  # the header deadline: see node.http.guard
        )
        try:
            await runner.setup()
        except Exception as exc:
            # The components that did start are stopped in reverse order (their background rounds
            # cancelled), instead of being left to the loop's shutdown, which closes them out of order.
            await _stop_started(runner)
            await close_database(engine, http.shutdown_grace_s)
            if (error := _lost_database(exc, "starting its components")) is not None:
                raise error from None
            raise
        self.site = site = GuardedSite(runner, http.host, http.port, connection_cap(http.max_connections))
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await close_database(engine, http.shutdown_grace_s)
            where = f"{settings.http.host}:{settings.http.port}"
            if exc.errno == errno.EADDRINUSE:
                raise NodeStartError(f"cannot listen on {where}: the port is already in use") from None
            raise NodeStartError(f"cannot listen on {where}: {exc.strerror}") from None
        self._runner = runner
        self.url = ctx.base_url = settings.url_for_port(int(runner.addresses[0][1]))
        self._write_run_file()
        # Kept for the rest of the loop's life: after the listening socket closes, asyncio's accept
        # retry timers left by an EMFILE storm still fire, each failing with "Invalid file descriptor".
        loop = asyncio.get_running_loop()
        if loop.get_exception_handler() is None:
            loop.set_exception_handler(LoopErrorLog())
        return self.url

    def _write_run_file(self) -> None:
        """Record where this process listens (so `cpnode status` finds a node started on port 0) and
        the digest of the config file it loaded (so status can tell when the file has changed)."""
        path = self.config_path
        record = RunRecord(
            os.getpid(), self.url, str(path) if path else None, config_digest(path) if path else None
        )
        write_run_record(self.settings, record)

    async def reload(self) -> ReloadResult:
        """Apply the config file again (SIGHUP); see node.reload."""
        if self.ctx is None:
            raise RuntimeError("the node is not started")
        return await reload_node(self.ctx)

    async def stop(self) -> None:
        """Finish in-flight requests (within the grace period), stop jobs, close the database."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            path = run_file(self.settings)
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                    path.unlink()
            except (OSError, ValueError):
                pass
        if self.ctx is not None:
            await close_database(self.ctx.engine, self.settings.http.shutdown_grace_s)
