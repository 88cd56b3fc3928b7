"""Tasks delivered by a partner: the trade carries the task, the seller runs it on its pool and
meters it into a signed usage record; the buyer follows it over the peer API, proxies its log and
outputs to the consumer, checks the usage against its own sight and settles both ledgers."""

from __future__ import annotations

from pathlib import Path

from tests.support.tasks import DEPOSIT, pair, python_task

WRITE = "import pathlib, time; time.sleep(1.1); pathlib.Path('out').mkdir(); pathlib.Path('out/r.txt').write_text('from b'); print('ran at b')"


async def test_a_task_runs_on_the_partners_pool(tmp_path: Path) -> None:
    """alice on `a` submits; `b` runs it; `a` shows its states, log and output; both ledgers settle
    the metered seconds."""
    async with pair(tmp_path) as p:
        task = await p.buyer.submit(python_task(WRITE, outputs=["out"]))
        done = await p.buyer.wait(task["id"], timeout_s=60)
        assert done["kind"] == "remote", done
        assert done["outcome"] == "succeeded", done
        assert done["used_s"] == 2, done
        _, order = await p.buyer.call("GET", f"/api/v1/orders/{done['order_id']}")
        assert (order["state"], order["used_s"], order["settled_amount"]) == ("settled", 2, 2), order
        _, sales = await p.seller.call("GET", "/api/v1/sales")
        [sale] = sales["sales"]
        assert (sale["state"], sale["used_s"], sale["settled_amount"]) == ("settled", 2, 2), sale
        status, chunk = await p.buyer.call("GET", f"/api/v1/tasks/{task['id']}/logs")
        assert status == 200, chunk
        import base64

        assert base64.b64decode(chunk["data_b64"]) == b"ran at b\n"
        async with p.buyer.http.get(f"/api/v1/tasks/{task['id']}/outputs/out/r.txt") as response:
            assert response.status == 200
            assert await response.read() == b"from b"
        me = await p.buyer.consumer()
        assert (me["balance"], me["held"]) == (DEPOSIT - 2, 0)
        _, sold = await p.seller.call("GET", f"/api/v1/tasks/{done['order_id']}")
        assert (sold["kind"], sold["outcome"], sold["state"]) == ("sold", "succeeded", "released")
