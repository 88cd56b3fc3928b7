"""The accounts' routes, and the authentication of every request, reach the database on the engine's
own threads, never on the event loop's default executor nor on the loop itself."""

from __future__ import annotations

from pathlib import Path

from tests.accounts.test_lifecycle import node
from tests.support.databases import statement_threads


async def test_account_requests_use_the_engines_threads(tmp_path: Path, db_url: str) -> None:
    """A consumer's token checked, its account read, verified, suspended, reinstated and its events listed:
    every statement runs on a `cpnode-db` thread."""
    async with node(tmp_path, db_url) as api:
        assert api.server.ctx is not None
        token = (await api.ok("POST", "/api/v1/consumers/alice/tokens", {}))["token"]
        with statement_threads(api.server.ctx.engine) as names:
            assert (await api.ok("GET", "/api/v1/whoami", token=token))["consumer"] == "alice"
            assert (await api.ok("GET", "/api/v1/accounts/alice"))["balance"] == 5000
            await api.ok("GET", "/api/v1/accounts")
            await api.ok("POST", "/api/v1/accounts/alice/verify", {"verdict": "verified"})
            await api.ok("POST", "/api/v1/accounts/alice/suspend", {"reason": "check"})
            await api.ok("POST", "/api/v1/accounts/alice/reinstate", {})
            events = (await api.ok("GET", "/api/v1/account-events?kind=consumer&subject=alice"))["events"]
            assert [e["action"] for e in events][-3:] == ["verify", "suspend", "reinstate"]
        assert names, "no statement ran"
        assert all(name.startswith("cpnode-db") for name in names), sorted(set(names))
