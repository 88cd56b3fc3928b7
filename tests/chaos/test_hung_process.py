"""A process of a node that hangs in the middle of a transaction (stopped by a debugger, a stalled
disk, SIGSTOP) keeps its PostgreSQL locks while it hangs; every other replica's writes to those rows
wait behind it. Found by the availability check: a frozen instance holding ledger locks took its
live twin down. PostgreSQL ends such a session after `database.idle_in_transaction_timeout_s`, so a
hung process stalls the others' writes for at most that long."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from node.config import load_settings
from node.db import make_engine
from tests.support.nodes import make_node_dir, running_node

pytestmark = pytest.mark.postgres


def _with_timeout(config: Path, seconds: int) -> None:
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace("[database]\n", f"[database]\nidle_in_transaction_timeout_s = {seconds}\n", 1),
        encoding="utf-8",
    )


async def test_a_hung_transaction_stalls_other_writers_only_briefly(
    tmp_path: Path, postgres_url: str
) -> None:
    """A connection made as the node makes them, holding a lock on the ledger's transfers and then
    idle (a hung replica), is ended by PostgreSQL after the configured second: a deposit through the
    API, which waits for that lock, then succeeds, and the hung connection finds its session gone."""
    config = make_node_dir(
        tmp_path, "alpha", db_url=postgres_url, extra_toml="[scheduler]\nenabled = false\n"
    )
    _with_timeout(config, 1)
    settings = load_settings(config, environ={})
    async with running_node(config) as server:
        assert server.ctx is not None
        headers = {"Authorization": f"Bearer {server.ctx.admin_token}"}
        async with aiohttp.ClientSession(server.url, headers=headers) as http:
            async with http.post("/api/v1/consumers", json={"id": "alice"}) as response:
                assert response.status == 201
            hung = make_engine(
                settings.database_url,
                idle_in_transaction_timeout_ms=int(settings.database.idle_in_transaction_timeout_s * 1000),
            )
            conn = hung.connect()
            try:
                conn.begin()
                conn.execute(sa.text("LOCK TABLE ledger_transfers IN EXCLUSIVE MODE"))
                deposit = {"amount": 100, "id": "dep-1"}
                timeout = aiohttp.ClientTimeout(total=30)  # without the session timeout: blocked for good
                async with http.post("/api/v1/consumers/alice/deposits", json=deposit, timeout=timeout) as r:
                    assert r.status == 201, await r.text()
                with pytest.raises(sa.exc.DBAPIError):
                    await asyncio.to_thread(conn.execute, sa.text("SELECT 1"))
            finally:
                conn.invalidate()
                conn.close()
                hung.dispose()
