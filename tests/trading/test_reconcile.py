"""Reconciliation over the peer API: `cpnode ledger reconcile --partner` fetches the partner's signed
summary from a real node and diffs it with ours. Discrepancies are injected into one node's ledger
through extra transfers only (never UPDATE), and each kind is found; bad summary requests are 4xx."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import ledger
from federation import canonical
from ledger import TransferKind, TransferRequest
from node.trading import books, documents
from tests.support.cli import cpnode_async
from tests.support.federation import service_of
from tests.support.trading import Market, engine_of, market, send, signed_post

FAR_FUTURE_MS = (int(time.time()) + 400 * 24 * 3600) * 1000


async def _reconcile(m: Market, from_ms: int, to_ms: int) -> tuple[int, str]:
    """Run `cpnode ledger reconcile --partner shanghai --json` for the buyer (in a thread: it runs
    its own event loop while the nodes keep serving in this one)."""
    while time.time() * 1000 <= to_ms:  # noqa: ASYNC110 - the partner only summarises closed windows
        await asyncio.sleep(0.01)
    config = m.buyer.settings.base_dir / "node.toml"
    args = [
        "ledger",
        "reconcile",
        "--partner",
        "shanghai",
        "--window",
        f"{from_ms}/{to_ms}",
        "--margin-s",
        "0",
    ]
    done = await cpnode_async(*args, "--json", config=config)
    return done.code, done.out or done.err


def _single(
    transfer_id: str,
    debit: str,
    credit: str,
    amount: int,
    trade: str,
    partner: str,
    digest: str | None = None,
) -> TransferRequest:
    return TransferRequest(
        transfer_id,
        TransferKind.SINGLE,
        debit,
        credit,
        "CNY",
        amount,
        code=ledger.CORRECTION_CODE,
        trade_id=trade,
        partner=partner,
        trade_digest=digest,
    )


async def test_reconcile_finds_every_injected_discrepancy(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Real trades reconcile clean over the peer API; then a trade missing on either side, a changed
    amount, a different end state and a different digest are each reported, and recorded once."""
    async with market(tmp_path, db_urls) as m:
        start_ms = int(time.time() * 1000) - 1000
        status, settled = await m.order(1, 2)
        assert status == 201
        assert (await m.post(f"/api/v1/orders/{settled['id']}/settle", {"used_hours": 1}))[0] == 200
        status, cancelled = await m.order(1, 1)
        assert (await m.post(f"/api/v1/orders/{cancelled['id']}/cancel", {}))[0] == 200
        status, held = await m.order(1, 1)
        assert held["state"] == "accepted"
        code, output = await _reconcile(m, start_ms, int(time.time() * 1000) + 1)
        assert code == 0, output
        clean = json.loads(output)
        assert (clean["our_trades"], clean["their_trades"], clean["discrepancies"]) == (3, 3, [])

        buyer, seller = engine_of(m.buyer), engine_of(m.seller)
        ledger.submit(
            seller,
            [
                _single(
                    "inject-missing",
                    "partner:beijing",
                    "provider:pool-a",
                    100,
                    "beijing.onlythere",
                    "beijing",
                )
            ],
        )
        ledger.submit(
            buyer,
            [
                _single(
                    "inject-extra", "escrow:orders", "partner:shanghai", 100, "beijing.onlyhere0", "shanghai"
                )
            ],
        )
        ledger.submit(
            seller,
            [_single("inject-amount", "partner:beijing", "provider:pool-a", 7, settled["id"], "beijing")],
        )
        ledger.submit(
            buyer,
            [
                _single(
                    "inject-d1",
                    "escrow:orders",
                    "partner:shanghai",
                    50,
                    "beijing.digest000",
                    "shanghai",
                    "a" * 64,
                )
            ],
        )
        ledger.submit(
            seller,
            [
                _single(
                    "inject-d2",
                    "partner:beijing",
                    "provider:pool-a",
                    50,
                    "beijing.digest000",
                    "beijing",
                    "b" * 64,
                )
            ],
        )

        # The held trade ends differently: the buyer voids its holds, the seller's expire (last: the
        # sweep's far-future time becomes the seller's ledger time from then on).
        assert books.submit(buyer, books.order_resolutions(held["id"], 0, None)) is None
        assert {t.pending_id for t in ledger.sweep_job(seller, now=FAR_FUTURE_MS)} == {
            f"{held['id']}:sale:provider",
            f"{held['id']}:sale:fee",
        }
        code, output = await _reconcile(m, start_ms, int(time.time() * 1000) + 1)
        assert code == 1, output
        report = json.loads(output)
        found = sorted((d["trade_id"], d["kind"]) for d in report["discrepancies"])
        assert found == sorted(
            [
                ("beijing.onlythere", "missing_here"),
                ("beijing.onlyhere0", "missing_there"),
                (settled["id"], "amount"),
                (held["id"], "state"),
                ("beijing.digest000", "digest"),
            ]
        )
        assert report["new"] == 5
        assert {d.kind for d in ledger.list_discrepancies(buyer, partner="shanghai", open_only=True)} == {
            "missing_here",
            "missing_there",
            "amount",
            "state",
            "digest",
        }
        code, output = await _reconcile(m, start_ms, json.loads(output)["window"]["to_ms"])
        assert (code, json.loads(output)["new"]) == (1, 0)  # found again, recorded once


async def test_summary_requests_are_checked(tmp_path: Path) -> None:
    """A summary request for a window still open, with a margin longer than its window, for another
    node, or unsigned, is refused with a 4xx code; a valid one gets the seller's signed summary."""
    async with market(tmp_path) as m:
        identity = service_of(m.buyer).identity()
        now_ms = int(time.time() * 1000)
        cases = [
            (
                documents.summary_request(identity, "shanghai", now_ms, now_ms + 3_600_000, 0, 1),
                422,
                "bad_summary",
            ),
            (
                documents.summary_request(identity, "shanghai", now_ms - 2000, now_ms - 1000, 5000, 1),
                422,
                "bad_summary",
            ),
            (
                documents.summary_request(identity, "shanghai", now_ms, now_ms - 1000, 0, 1),
                422,
                "bad_summary",
            ),
            (
                documents.summary_request(identity, "guangzhou", now_ms - 2000, now_ms - 1000, 0, 1),
                400,
                "wrong_audience",
            ),
        ]
        for document, status, code in cases:
            body = canonical.encode(document)
            headers, url = await signed_post(m, "/fed/v1/ledger/summary", body)
            got_status, got = await send(url, body, headers)
            assert (got_status, got["error"]) == (status, code), got
        body = canonical.encode(cases[0][0])
        got_status, got = await send(
            m.seller.url + "/fed/v1/ledger/summary", body, {"Content-Type": "application/json"}
        )
        assert got_status == 401
        body = canonical.encode(
            documents.summary_request(identity, "shanghai", now_ms - 60_000, now_ms - 1000, 0, 1)
        )
        headers, url = await signed_post(m, "/fed/v1/ledger/summary", body)
        got_status, summary = await send(url, body, headers)
        assert got_status == 200
        assert (summary["issuer"], summary["partner"], summary["count"]) == ("shanghai", "beijing", 0)
        assert "shanghai" in summary["signatures"]
