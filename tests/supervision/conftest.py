"""Supervision fixtures: a supervisor and reporting nodes served in this event loop, pinned to each
other as `cpnode supervisors add` and `cpnode supervision nodes add` do."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from nacl.signing import SigningKey

from federation import canonical
from federation.httpsig import Identity, sign_request
from node.roles import ALL_ROLES
from node.service import NodeServer
from node.supervision import store, tables
from node.supervision.figures import PoolFigures
from node.supervision.report import build_report
from tests.support.federation import FED_TOML, offer_toml, public_key_of
from tests.support.nodes import make_node_dir, running_node

# Jobs are run by hand (scheduler off), so each test decides when reports are made and checked.
SUPERVISION_TOML = """
[scheduler]
enabled = false

[supervision]
report_interval_s = 1
stale_intervals = 3
check_interval_s = 1
"""


def register(supervisor: NodeServer, node: NodeServer) -> None:
    """The supervisor registers `node` (name, URL, key)."""
    assert supervisor.ctx is not None
    assert node.ctx is not None
    pinned = store.Pinned(node.ctx.name, node.url, public_key_of(node))
    store.add_pinned(supervisor.ctx.engine, tables.nodes_t, pinned, int(time.time()))


def report_to(node: NodeServer, supervisor: NodeServer) -> None:
    """`node` pins `supervisor` as a supervisor it reports to."""
    assert supervisor.ctx is not None
    assert node.ctx is not None
    pinned = store.Pinned(supervisor.ctx.name, supervisor.url, public_key_of(supervisor))
    store.add_pinned(node.ctx.engine, tables.supervisors_t, pinned, int(time.time()))


async def run_job(server: NodeServer, job: str) -> None:
    """Run one tick of a scheduled job of `server` now; fail if it did not succeed."""
    assert server.ctx is not None
    outcome = await server.ctx.scheduler.run_job(job)
    assert outcome == "ok", [j.last_error for j in server.ctx.scheduler.jobs() if j.job_id == job]


async def admin_get(server: NodeServer, path: str) -> tuple[int, Any]:
    """GET `path` with the node's admin token: (status, JSON)."""
    assert server.ctx is not None
    headers = {"Authorization": f"Bearer {server.ctx.admin_token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + path, headers=headers) as response,
    ):
        return response.status, await response.json()


async def post_signed(
    url: str,
    signer: Identity,
    to: str,
    body: bytes,
    path: str = "/fed/v1/supervision/reports",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST `body` to `url + path`, signed by `signer` for node `to` (or with the given signed
    `headers`, to replay a request): (status, JSON)."""
    if headers is None:
        headers = sign_request(signer, "POST", url + path, body, to=to, now_ts=int(time.time()))
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + path, data=body, headers=headers) as response,
    ):
        return response.status, canonical.decode(await response.read())


def node_report(
    key: SigningKey, seq: int = 1, pools: Sequence[PoolFigures] = (), node: str = "north"
) -> bytes:
    """Report `seq` of `node` for the supervisor `watch`, made and signed with `key` by the test."""
    return build_report(
        node=node,
        audience="watch",
        seq=seq,
        now_ts=int(time.time()),
        region=node,
        interval_s=1,
        period=(0, 1),
        pools=pools,
        trades=[],
        key=key,
    )


@asynccontextmanager
async def supervised(
    tmp_path: Path, names: Sequence[str], extra: str = "", db_url: str | None = None
) -> AsyncIterator[tuple[NodeServer, list[NodeServer]]]:
    """A supervisor (`supervisor` role only; its database at `db_url`, else SQLite) and nodes with
    two offers each, not yet pinned."""
    async with AsyncExitStack() as stack:
        config = make_node_dir(tmp_path, "watch", db_url=db_url, extra_toml=FED_TOML + SUPERVISION_TOML)
        supervisor = await stack.enter_async_context(running_node(config, frozenset({"supervisor"})))
        nodes = []
        for name in names:
            config = make_node_dir(
                tmp_path, name, region=name, extra_toml=FED_TOML + SUPERVISION_TOML + extra + offer_toml(name)
            )
            nodes.append(await stack.enter_async_context(running_node(config, ALL_ROLES)))
        yield supervisor, nodes
