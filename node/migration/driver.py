"""Driving migrations in a process that hosts the plugins (role `connectors`).

Each unfinished migration is driven by one task that runs the action of its stored state again and
again until it rests (node.migration.steps). A database lease (`migration:ID`, node.leases) keeps
each migration on one replica; the task renews it while it works and stops if it is lost. A
supervisor picks up every unfinished migration every `supervise_every_s` (so after a restart, or a
request made through another process, the work goes on); a request made here starts at once
(`kick`). Stopping the driver cancels the tasks and leaves every migration in its stored state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from connectors.stopping import stop_tasks
from node import leases
from node.migration import store
from node.migration.machine import RESTING
from node.migration.steps import Steps

log = logging.getLogger("cpnode.migration")


class Driver:
    """The tasks driving this replica's migrations."""

    def __init__(self, steps: Steps, holder: str) -> None:
        self.steps = steps
        self.core = steps.core
        self.holder = holder
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.closing = False

    def kick(self, migration_id: str) -> None:
        """Drive a migration now (unless this replica already does)."""
        if self.closing or migration_id in self.tasks:
            return
        self.tasks[migration_id] = asyncio.create_task(
            self._drive(migration_id), name=f"migration {migration_id}"
        )

    async def supervise(self) -> None:
        """Pick up every unfinished migration, for ever (a lifecycle task)."""
        while not self.closing:
            try:
                for migration in await self.core.db(store.unfinished_migrations):
                    self.kick(migration.id)
            except Exception as exc:  # the database may be briefly unavailable; look again next round
                log.warning("could not look for unfinished migrations: %s", exc)
            await asyncio.sleep(self.core.settings.supervise_every_s)

    async def _lease(self, migration_id: str) -> bool:
        ttl_ms = int(self.core.settings.lease_ttl_s * 1000)
        return await self.core.db(
            leases.try_acquire, f"migration:{migration_id}", self.holder, self.core.clock(), ttl_ms
        )

    async def _keep_lease(self, migration_id: str, driving: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.core.settings.lease_ttl_s / 3)
            try:
                held = await self._lease(migration_id)
            except Exception as exc:  # keep working; the next renewal may succeed before the lease ends
                log.warning("migration %s: could not renew its lease: %s", migration_id, exc)
                continue
            if not held:
                log.warning("migration %s: lease lost to another replica; stopping here", migration_id)
                driving.cancel()
                return

    async def _drive(self, migration_id: str) -> None:
        renewal: asyncio.Task[None] | None = None
        held = False
        try:
            held = await self._lease(migration_id)
            if not held:
                return
            current = asyncio.current_task()
            if current is not None:
                renewal = asyncio.create_task(self._keep_lease(migration_id, current))
            while not self.closing:
                migration = await self.core.db(store.get_migration, migration_id)
                if migration is None or migration.state in RESTING:
                    return
                try:
                    await self.steps.step(migration)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # judged by the steps: tried again, or the migration fails
                    delay = await self.steps.failed(migration, exc)
                    if delay:
                        await asyncio.sleep(delay)
        except asyncio.CancelledError:
            pass
        except Exception:  # the database failed while handling a failure: the supervisor comes back
            log.exception("migration %s: driving stopped", migration_id)
        finally:
            if renewal is not None:
                await stop_tasks([renewal], f"migration {migration_id}'s lease renewal")
            if held:
                with contextlib.suppress(Exception):
                    await self.core.db(leases.release, f"migration:{migration_id}", self.holder)
            self.tasks.pop(migration_id, None)

    async def close(self) -> None:
        """Stop every task; each migration stays in its stored state for the next start."""
        self.closing = True
        tasks = list(self.tasks.values())
        await stop_tasks(tasks, "a migration's driving")
