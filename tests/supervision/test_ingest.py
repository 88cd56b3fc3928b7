"""A supervisor and real nodes in one event loop, over real HTTP: reports are made, signed,
delivered, refused when they must be, totalled, and compared with the nodes' catalogs."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from nacl.signing import SigningKey

from federation.httpsig import Identity, sign_request
from node.peering.component import PURGE_JOB
from node.supervision import store, tables
from node.supervision.component import CHECK_JOB, REPORT_JOB
from node.supervision.figures import PoolFigures
from tests.supervision.conftest import (
    admin_get,
    node_report,
    post_signed,
    register,
    report_to,
    run_job,
    supervised,
)
from tests.support.federation import public_key_of
from tests.support.polling import eventually

# offer_toml: per node two A100 x8 offers with 10 and 11 free units in region NAME.
CHIPS_PER_NODE = (10 + 11) * 8


def outbox(server, supervisor: str) -> list[tuple[int, str, str | None]]:  # type: ignore[no-untyped-def]
    """(seq, state, last error) of every report `server` made for `supervisor`."""
    with server.ctx.engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.outbox_t.c.seq, tables.outbox_t.c.state, tables.outbox_t.c.last_error)
            .where(tables.outbox_t.c.supervisor == supervisor)
            .order_by(tables.outbox_t.c.seq)
        )
        return [tuple(row) for row in rows]


async def test_reports_are_totalled_by_region_and_chip(tmp_path: Path, db_url: str) -> None:
    """Two registered nodes report; the supervisor's totals (on each database backend) add their
    pools by region and chip family, its history keeps each report, and each node recorded what it
    sent."""
    supervisor_db = None if db_url.startswith("sqlite") else db_url
    async with supervised(tmp_path, ["north", "east"], db_url=supervisor_db) as (supervisor, nodes):
        for node in nodes:
            register(supervisor, node)
            report_to(node, supervisor)
            await run_job(node, REPORT_JOB)
        status, summary = await admin_get(supervisor, "/api/v1/supervision")
        assert status == 200
        rows = {(r["region"], r["chip_family"]): r for r in summary["totals"]["by_region_chip"]}
        assert set(rows) == {("north", "nvidia-a100"), ("east", "nvidia-a100")}
        for row in rows.values():
            assert (row["nodes"], row["pools"], row["capacity_chips"], row["free_chips"]) == (
                1,
                1,
                CHIPS_PER_NODE,
                CHIPS_PER_NODE,
            )
        assert summary["totals"]["total"]["capacity_chips"] == 2 * CHIPS_PER_NODE
        assert summary["flagged"] == []
        for node in nodes:
            assert outbox(node, "watch") == [(1, "sent", None)]
        status, history = await admin_get(supervisor, "/api/v1/supervision/nodes/north/history")
        assert status == 200
        assert [r["seq"] for r in history["reports"]] == [1]
        status, missing = await admin_get(supervisor, "/api/v1/supervision/nodes/nobody/history")
        assert (status, missing["error"]) == (404, "unknown_node")


async def test_unregistered_node_is_refused_and_keeps_its_report(tmp_path: Path) -> None:
    """A node the supervisor has not registered is refused (401 unknown_node); its report stays
    pending with the refusal recorded, nothing is stored at the supervisor, and once registered
    the same report is delivered."""
    async with supervised(tmp_path, ["west"]) as (supervisor, (west,)):
        report_to(west, supervisor)
        await run_job(west, REPORT_JOB)
        [(seq, state, error)] = outbox(west, "watch")
        assert (seq, state) == (1, "pending")
        assert error is not None
        assert "unknown_node" in error
        _, summary = await admin_get(supervisor, "/api/v1/supervision")
        assert summary["registered_nodes"] == 0
        assert summary["totals"]["reporting_nodes"] == 0
        register(supervisor, west)
        assert west.ctx is not None
        store.set_delivery(west.ctx.engine, "watch", 0, 0)  # skip the backoff the refusal started
        await run_job(west, REPORT_JOB)
        assert next(row[:2] for row in outbox(west, "watch")) == (1, "sent")


async def test_rolled_back_and_repeated_sequence_numbers_are_refused(tmp_path: Path) -> None:
    """A node whose outbox was restored from an older copy starts again at 1: the supervisor refuses
    it as a rollback, the node records the refusal; another report under a number already used is
    refused as repeated; the very same report sent again changes nothing."""
    async with supervised(tmp_path, ["north"]) as (supervisor, (north,)):
        register(supervisor, north)
        report_to(north, supervisor)
        assert north.ctx is not None
        assert supervisor.ctx is not None
        await run_job(north, REPORT_JOB)
        with north.ctx.engine.begin() as conn:
            conn.execute(tables.outbox_t.update().values(created_ts=0))  # make the next one due now
        await run_job(north, REPORT_JOB)
        assert [row[:2] for row in outbox(north, "watch")] == [(1, "sent"), (2, "sent")]
        with north.ctx.engine.begin() as conn:
            first = conn.execute(
                sa.select(tables.outbox_t.c.body).where(tables.outbox_t.c.seq == 1)
            ).scalar_one()
            made_ts = conn.execute(sa.select(sa.func.max(tables.outbox_t.c.created_ts))).scalar_one()
            conn.execute(tables.outbox_t.delete())
        # The restored node's new report 1 must differ from the first (its times are in seconds).
        await eventually(lambda: int(time.time()) > made_ts, what="the next second")
        await run_job(north, REPORT_JOB)
        [(seq, state, error)] = outbox(north, "watch")
        assert (seq, state) == (1, "refused")
        assert error is not None
        assert "sequence_rollback" in error
        signer = Identity("north", north.ctx.identity.signing_key)
        status, answer = await post_signed(supervisor.url, signer, "watch", bytes(first))
        assert (status, answer["status"]) == (200, "duplicate")
        forged_two = node_report(north.ctx.identity.signing_key, seq=2)
        status, answer = await post_signed(supervisor.url, signer, "watch", forged_two)
        assert (status, answer["error"]) == (409, "sequence_repeated")
        _, history = await admin_get(supervisor, "/api/v1/supervision/nodes/north/history")
        assert [r["seq"] for r in history["reports"]] == [2, 1]


async def test_bad_signatures_are_refused(tmp_path: Path) -> None:
    """A report signed with a key that is not the registered node's is refused before it is read,
    and so is one whose document is signed by another key than the request."""
    async with supervised(tmp_path, ["north"]) as (supervisor, (north,)):
        register(supervisor, north)
        assert north.ctx is not None
        impostor = SigningKey.generate()
        body = node_report(impostor)
        status, answer = await post_signed(supervisor.url, Identity("north", impostor), "watch", body)
        assert (status, answer["error"]) == (401, "unknown_key")
        status, answer = await post_signed(
            supervisor.url, Identity("north", north.ctx.identity.signing_key), "watch", body
        )
        assert (status, answer["error"]) == (401, "unknown_key")
        _, summary = await admin_get(supervisor, "/api/v1/supervision")
        assert summary["nodes"][0]["flags"] == ["never_reported"]


async def test_report_contradicting_the_catalog_is_flagged(tmp_path: Path) -> None:
    """A node that reports fewer chips than its own catalog offers free, and hides a pool, is
    flagged once the supervisor has fetched its signed catalog; an honest node is not."""
    async with supervised(tmp_path, ["north", "east"]) as (supervisor, (north, east)):
        for node in (north, east):
            register(supervisor, node)
            report_to(node, supervisor)
        await run_job(east, REPORT_JOB)
        assert north.ctx is not None
        understated = PoolFigures("pool-a", "north", "nvidia", "A100", (), 1, 1, 8, 8, 64, 64, None)
        hidden = PoolFigures("pool-z", "north", "nvidia", "H100", (), 1, 1, 8, 8, 64, 64, None)
        body = node_report(north.ctx.identity.signing_key, pools=[understated, hidden])
        status, _ = await post_signed(
            supervisor.url, Identity("north", north.ctx.identity.signing_key), "watch", body
        )
        assert status == 200
        await run_job(supervisor, CHECK_JOB)
        _, summary = await admin_get(supervisor, "/api/v1/supervision")
        by_node = {n["node"]: n for n in summary["nodes"]}
        assert by_node["east"]["check"]["status"] == "ok"
        assert by_node["east"]["flags"] == []
        assert "contradicts_catalog" in by_node["north"]["flags"]
        detail = " | ".join(by_node["north"]["check"]["detail"])
        assert "free chips" in detail
        assert "pool-z" in detail
        assert summary["flagged"] == ["north"]


async def test_a_replayed_request_is_refused(tmp_path: Path) -> None:
    """The very same signed request sent twice is refused the second time (401 replayed), while the
    same report under a fresh signature is answered as a duplicate that changes nothing."""
    async with supervised(tmp_path, ["north"]) as (supervisor, (north,)):
        register(supervisor, north)
        assert north.ctx is not None
        signer = Identity("north", north.ctx.identity.signing_key)
        body = node_report(signer.key)
        url = supervisor.url + "/fed/v1/supervision/reports"
        headers = sign_request(signer, "POST", url, body, to="watch", now_ts=int(time.time()))
        status, answer = await post_signed(supervisor.url, signer, "watch", body, headers=headers)
        assert (status, answer["status"]) == (200, "accepted")
        status, answer = await post_signed(supervisor.url, signer, "watch", body, headers=headers)
        assert (status, answer["error"]) == (401, "replayed")
        status, answer = await post_signed(supervisor.url, signer, "watch", body)
        assert (status, answer["status"]) == (200, "duplicate")


async def test_each_process_runs_the_jobs_of_its_roles(tmp_path: Path) -> None:
    """A supervisor-only process runs the catalog checks and purges the nonces its reports leave;
    a node runs the reporting job and no check."""
    async with supervised(tmp_path, ["north"]) as (supervisor, (north,)):
        assert supervisor.ctx is not None
        assert north.ctx is not None
        assert {job.job_id for job in supervisor.ctx.scheduler.jobs()} == {CHECK_JOB, PURGE_JOB}
        node_jobs = {job.job_id for job in north.ctx.scheduler.jobs()}
        assert REPORT_JOB in node_jobs
        assert CHECK_JOB not in node_jobs
        await run_job(supervisor, PURGE_JOB)


async def test_a_refused_supervisor_address_does_not_stop_the_others(tmp_path: Path) -> None:
    """A supervisor whose URL points at a refused address (cloud metadata) gets nothing and keeps
    its report pending, while the other supervisor's report is delivered in the same round."""
    async with supervised(tmp_path, ["north"]) as (supervisor, (north,)):
        assert north.ctx is not None
        register(supervisor, north)
        store.add_pinned(
            north.ctx.engine,
            tables.supervisors_t,
            store.Pinned("metadata", "http://169.254.169.254", public_key_of(supervisor)),
            int(time.time()),
        )
        report_to(north, supervisor)
        await run_job(north, REPORT_JOB)
        assert outbox(north, "watch") == [(1, "sent", None)]
        assert [row[:2] for row in outbox(north, "metadata")] == [(1, "pending")]


async def test_a_node_registered_without_url_is_not_checked(tmp_path: Path) -> None:
    """A node registered without a URL is totalled, and its check says why its catalog was not
    compared instead of flagging it."""
    async with supervised(tmp_path, ["north"]) as (supervisor, (north,)):
        assert supervisor.ctx is not None
        assert north.ctx is not None
        pinned = store.Pinned("north", "", public_key_of(north))
        store.add_pinned(supervisor.ctx.engine, tables.nodes_t, pinned, int(time.time()))
        report_to(north, supervisor)
        await run_job(north, REPORT_JOB)
        await run_job(supervisor, CHECK_JOB)
        _, summary = await admin_get(supervisor, "/api/v1/supervision")
        [node] = summary["nodes"]
        assert node["flags"] == []
        assert node["check"]["status"] == "unchecked"
        assert "no URL" in node["check"]["detail"][0]
        assert summary["totals"]["total"]["capacity_chips"] == CHIPS_PER_NODE
