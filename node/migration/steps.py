"""The actions of the migration state machine (node.migration.machine), one per state that has work:
each runs after its state is stored, is idempotent, and ends by moving the migration on
(compare-and-set), so running the action of the state a migration was left in finishes it.

What a step creates is written down at once, whatever the state became meanwhile (the destination
instance, the path, the express job), so an undo always finds it; the destination instance is also
found by its name (`mig-ID`) if the node stopped between creating it and writing it down.
Failures are judged by `Steps.failed`: a transient one is tried again (`step_attempts` times before
the cutover commits, for ever after it, with backoff), anything else fails the migration into its
rollback. The transfer is in node.migration.transfer, the undo in node.migration.undo.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from connectors.contract import Instance, InstanceSpec
from connectors.errors import NotFound
from connectors.network.contract import Path, PathRequest
from node.migration import partner, planning, store, transfer, undo
from node.migration.core import MigrationCore
from node.migration.errors import StepFailed, describe, is_transient
from node.migration.machine import UNDOABLE, UNDOING, MigrationEvent, MigrationState, forward_event
from node.migration.records import Migration

log = logging.getLogger("cpnode.migration")
Action = Callable[[Migration], Awaitable[Migration | None]]
MAX_BACKOFF_FACTOR = 8


def path_fields(path: Path) -> dict[str, Any]:
    """A provisioned path as the migration keeps it."""
    return {"path_id": path.id, "path": path.model_dump(mode="json")}


def ended(instance: Instance) -> bool:
    """Whether an instance's program is not running (stopped, failed or never started)."""
    return instance.state in ("stopped", "failed", "deleted")


class Steps:
    """What each migration state does."""

    def __init__(self, core: MigrationCore) -> None:
        self.core = core
        # The action of every state that is not resting (node.migration.machine); a table test checks
        # that the keys are exactly those states.
        self.actions: dict[MigrationState, Action] = {
            "planned": self._on_planned,
            "path_provisioning": self._on_path_provisioning,
            "path_ready": self._forward,
            "destination_deploying": self._on_destination_deploying,
            "destination_ready": self._forward,
            "source_quiescing": self._on_source_quiescing,
            "transferring": lambda m: transfer.run(self, m),
            "verifying": self._on_verifying,
            "cutover": self._on_cutover,
            "rolling_back": lambda m: undo.run(self, m),
            "cancelling": lambda m: undo.run(self, m),
        }

    # -- storing ---------------------------------------------------------------------------------

    async def move(
        self, m: Migration, event: MigrationEvent, detail: str = "", **values: Any
    ) -> Migration | None:
        """Move the migration from its current state by `event` (None if it moved meanwhile)."""
        return await self.core.db(
            store.move_migration, m.id, m.state, event, self.core.clock(), detail, **values
        )

    async def record(self, m: Migration, **values: Any) -> Migration:
        """Write fields whatever the state (what a step created must never be lost)."""
        written = await self.core.db(store.update_migration, m.id, self.core.clock(), None, **values)
        if written is None:
            raise StepFailed(f"migration {m.id} disappeared", code="unknown_migration")
        return written

    async def note(self, m: Migration, detail: str) -> None:
        """Add a line to the migration's history."""
        await self.core.db(store.note, m.id, m.state, self.core.clock(), detail)

    async def step(self, m: Migration) -> Migration | None:
        """Run the action of the migration's state; the migration as moved (None if it moved meanwhile)."""
        action = self.actions.get(m.state)
        if action is None:
            return None  # resting: nothing to do
        return await action(m)

    async def failed(self, m: Migration, exc: BaseException) -> float | None:
        """Deal with a step that raised: fail the migration into its rollback (None), or store the
        error and say how long to wait before trying again."""
        error = describe(exc)
        committed = m.state == "cutover" and m.committed_ms is not None
        tries = m.attempts + 1
        may_retry = is_transient(exc) and not isinstance(exc, StepFailed)
        if (
            m.state in UNDOABLE
            and not committed
            and (not may_retry or tries >= self.core.settings.step_attempts)
        ):
            log.warning("migration %s failed in %s: %s", m.id, m.state, error)
            await self.move(m, "fail", f"{m.state}: {error}", reason=f"{m.state}: {error}", last_error=error)
            return None
        # An undo in progress, or a cutover that committed, is never given up: it is tried again.
        if m.state in UNDOING or committed:
            log.warning("migration %s: %s failed, trying again: %s", m.id, m.state, error)
        await self.core.db(
            store.update_migration, m.id, self.core.clock(), m.state, attempts=tries, last_error=error
        )
        await self.note(m, f"try {tries} failed: {error}")
        return self.core.settings.retry_delay_s * min(MAX_BACKOFF_FACTOR, 1 << min(tries - 1, 16))

    # -- forward actions ---------------------------------------------------------------------------

    async def _forward(self, m: Migration) -> Migration | None:
        return await self.move(m, forward_event(m.state))

    async def _on_planned(self, m: Migration) -> Migration | None:
        if m.partner is not None and m.order_id is None:
            fields = await partner.order(self.core, m)
            m = await self.record(m, **fields)
            return await self.move(m, "provision", f"order {m.order_id} at {m.partner}: {m.destination_pool}")
        if m.destination_pool is not None:
            return await self.move(m, "provision")
        asked = dict((m.plan or {}).get("ask") or {})  # stored by a process that could not decide
        asked.update(
            source_pool=m.source_pool, instance_id=m.source_instance, bandwidth_mbps=m.bandwidth_mbps
        )
        ask = planning.Ask(**asked)
        decision, _source, state_bytes = await planning.plan(self.core, ask)
        try:
            fields = planning.destination_fields(self.core, ask, decision, state_bytes)
        except ValueError as exc:
            raise StepFailed(str(exc), code="no_destination") from None
        return await self.move(m, "provision", f"to {fields['destination_pool']}", **fields)

    async def provision(self, m: Migration) -> Path:
        """Reserve a path for the migration's transfer (its sites, its bandwidth)."""
        assert m.network is not None, "only a migration with a network plugin provisions paths"
        request = PathRequest(
            src=m.source_site or "", dst=m.destination_site or "", bandwidth_mbps=m.bandwidth_mbps
        )
        return await self.core.network(m.network, lambda n: n.provision(request))

    async def _on_path_provisioning(self, m: Migration) -> Migration | None:
        if m.network is None:
            return await self.move(m, "path_ready", "no path needed (same site, or no network plugin)")
        if m.path_id is not None:
            path_id = m.path_id
            current = await self.core.network(m.network, lambda n: n.status(path_id))
            if current.state == "active":
                return await self.move(m, "path_ready", f"path {current.id} is active")
            await self.release_path(m.network, path_id)
        path = await self.provision(m)
        m = await self.record(m, **path_fields(path))
        hops = " → ".join(path.hops)
        return await self.move(m, "path_ready", f"path {path.id}: {hops}, {path.bandwidth_mbps} Mbit/s")

    async def release_path(self, network: str, path_id: str) -> None:
        """Release a path (releasing one released or unknown is not an error)."""
        with contextlib.suppress(NotFound):
            await self.core.network(network, lambda n: n.release(path_id))

    async def find_destination(self, m: Migration) -> Instance | None:
        """The destination instance, by its stored id or else by its name; None if it does not exist."""
        pool = m.destination_pool
        assert pool is not None, "the destination pool is chosen before anything is created"
        if m.destination_instance is not None:
            instance_id = m.destination_instance
            try:
                return await self.core.instance(pool, instance_id)
            except NotFound:
                return None
        for instance in await self.core.compute(pool, lambda p: p.list_instances()):
            if instance.name == m.destination_name and instance.state != "deleted":
                return instance
        return None

    async def _on_destination_deploying(self, m: Migration) -> Migration | None:
        core = self.core
        if m.partner is not None:
            instance_id = await partner.prepare(core, m)
            if m.destination_instance != instance_id:
                m = await self.record(m, destination_instance=instance_id)
            return await self.move(m, "deployed", f"instance {instance_id} at {m.partner}")
        pool = m.destination_pool
        assert pool is not None, "the destination pool is chosen in `planned`"
        source = await core.instance(m.source_pool, m.source_instance)
        if source.program is None:
            raise StepFailed(f"the source instance {source.id} has no program to deploy", code="no_program")
        destination = await self.find_destination(m)
        if destination is None or destination.state == "deleted":
            spec = InstanceSpec(
                name=m.destination_name,
                region_id=m.destination_region or "",
                flavor_id=m.destination_flavor or "",
            )
            destination = await core.compute(pool, lambda p: p.create_instance(spec))
        if m.destination_instance != destination.id:
            m = await self.record(m, destination_instance=destination.id)
        instance_id = destination.id
        if destination.state == "creating":
            destination = await core.wait_instance(
                pool, instance_id, lambda i: i.state != "creating", core.settings.start_timeout_s, "creating"
            )
        if destination.program is None:
            program = source.program
            await core.compute(pool, lambda p: p.deploy(instance_id, program))
        return await self.move(m, "deployed", f"instance {instance_id} on {pool}")

    async def _on_source_quiescing(self, m: Migration) -> Migration | None:
        core = self.core
        pool, instance_id = m.source_pool, m.source_instance
        if m.checkpoint is None:
            source = await core.instance(pool, instance_id)
            if source.state != "running":
                raise StepFailed(
                    f"the source is {source.state}; only a running program checkpoints",
                    code="source_not_running",
                )
            timeout_s = core.settings.checkpoint_timeout_s
            checkpoint = await core.compute(
                pool, lambda p: p.checkpoint(instance_id, timeout_s), timeout_s=timeout_s + 10
            )
            # The manifest (per-chunk hashes) is built while the source still runs: its state files do
            # not change between checkpoints, and the transfer then need not read them first.
            manifest = await core.storage_manifest(checkpoint.storage)
            files = [f.model_dump(mode="json") for f in checkpoint.files]
            described = {(f.path, f.size_bytes, f.sha256) for f in manifest.files}
            if described != {(f.path, f.size_bytes, f.sha256) for f in checkpoint.files}:
                raise StepFailed(
                    "the source's state files changed after its checkpoint", code="state_changed"
                )
            written = await core.db(
                store.update_migration,
                m.id,
                core.clock(),
                "source_quiescing",
                checkpoint={
                    "seq": checkpoint.seq,
                    "files": files,
                    "manifest": manifest.model_dump(mode="json"),
                },
            )
            if written is None:
                return None  # cancelled meanwhile: the source runs on
            m = written
        await core.compute(pool, lambda p: p.stop_instance(instance_id))
        m = await self.record(m, source_stopped_ms=m.source_stopped_ms or core.clock())
        size = m.state_bytes or 0
        return await self.move(
            m, "checkpointed", f"checkpoint {m.checkpoint and m.checkpoint['seq']}: {size} bytes"
        )

    async def _on_verifying(self, m: Migration) -> Migration | None:
        core = self.core
        assert m.checkpoint is not None, "verifying follows the checkpoint"
        expected = {f["path"]: (f["size_bytes"], f["sha256"]) for f in m.checkpoint["files"]}
        if core.settings.rehash and m.partner is None:
            pool, instance_id = m.destination_pool or "", m.destination_instance or ""
            endpoint = await core.compute(pool, lambda p: p.storage_endpoint(instance_id))
            listed = await core.storage_files(endpoint, "destination")
            arrived = {f.path: (f.size_bytes, f.sha256) for f in listed}
            how = "re-read and hashed at the destination"
        else:
            # The destination committed each file only once every chunk of the manifest's entry had
            # matched its SHA-256 as it landed (connectors.uploads), and the manifest, whose file
            # SHA-256 comes from the same read as its chunk hashes, was checked against the
            # checkpoint before the source stopped.
            view = await core.express().job(transfer.job_id(m))
            manifest = {f["path"]: (f["size_bytes"], f["sha256"]) for f in m.checkpoint["manifest"]["files"]}
            complete = view.state == "completed" and view.progress.files_done == len(manifest)
            arrived = manifest if complete and set(view.files or []) == set(manifest) else {}
            how = "each committed by the destination against its SHA-256"
        if arrived != expected:
            wrong = sorted(p for p in expected.keys() | arrived.keys() if arrived.get(p) != expected.get(p))
            raise StepFailed(
                f"the destination's files differ from the checkpoint's: {', '.join(wrong[:10])}",
                code="verify_failed",
            )
        return await self.move(m, "verified", f"{len(expected)} files, {m.state_bytes} bytes, {how}")

    async def _on_cutover(self, m: Migration) -> Migration | None:
        core = self.core
        pool, instance_id = m.destination_pool or "", m.destination_instance or ""
        if m.committed_ms is None and m.partner is not None:
            answer = await partner.start(core, m)
            if answer.get("instance_state") != "running" and answer.get("exit_code") != 0:
                raise StepFailed(
                    f"the destination at {m.partner} did not take over: {answer.get('instance_state')} "
                    f"({answer.get('exit_code')}) {answer.get('detail') or ''}".strip(),
                    code="destination_failed",
                )
            started = answer.get("started_ms")
            written = await core.db(
                store.update_migration,
                m.id,
                core.clock(),
                "cutover",
                committed_ms=core.clock(),
                destination_started_ms=started if isinstance(started, int) else core.clock(),
            )
            if written is None:
                return None
            m = written
            await self.note(m, f"committed: {instance_id} at {m.partner} runs from the moved state")
        if m.partner is not None:
            await partner.cutover(core, m)
        if m.committed_ms is None:
            destination = await core.instance(pool, instance_id)
            if destination.started_ms is None and ended(destination):
                destination = await core.compute(pool, lambda p: p.start_instance(instance_id, restore=True))
            destination = await core.wait_instance(
                pool, instance_id, lambda i: i.state != "starting", core.settings.start_timeout_s, "starting"
            )
            if destination.state == "failed" or (
                destination.state != "running" and destination.exit_code != 0
            ):
                raise StepFailed(
                    f"the destination did not take over: {destination.state} "
                    f"({destination.reason or destination.exit_code}) {destination.detail}".strip(),
                    code="destination_failed",
                )
            started = destination.started_ms or core.clock()
            written = await core.db(
                store.update_migration,
                m.id,
                core.clock(),
                "cutover",
                committed_ms=core.clock(),
                destination_started_ms=started,
            )
            if written is None:
                return None
            m = written
            await self.note(m, f"committed: {instance_id} on {pool} runs from the moved state")
        for hook in core.hooks:
            await hook(m)
        source_id = m.source_instance
        with contextlib.suppress(NotFound):
            await core.compute(m.source_pool, lambda p: p.delete_instance(source_id))
        if m.network is not None and m.path_id is not None:
            await self.release_path(m.network, m.path_id)
        return await self.move(m, "committed", f"source {source_id} released; downtime {m.downtime_ms} ms")
