"""The command line with consumer tokens against a real node: the admin issues, lists and revokes
tokens with `cpnode consumers`, and a consumer drives its own orders with `cpnode orders
--token-file` or $CPNODE_CONSUMER_TOKEN, while the commands without a token stay the admin's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from node.cli.main import main as cpnode
from tests.support.trading import Market, market
from tests.support.trading import run_cli as run


async def run_json(m: Market, *args: str) -> Any:
    """`cpnode ARGS --json`, which must succeed; its parsed output."""
    code, out, err = await run(m, *args, "--json")
    assert code == 0, out + err
    return json.loads(out)


async def test_consumer_drives_its_own_orders_through_the_cli(  # noqa: PLR0915 (one scenario, in order)
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`consumers token` prints a token once; with it in a file (or the environment) `orders place`
    (no --consumer, source found through the offers), `list`, `show` and `cancel` act for
    its consumer only; after `consumers revoke-token` the same commands are refused, and the admin's
    own commands never changed."""
    monkeypatch.delenv("CPNODE_CONSUMER_TOKEN", raising=False)
    async with market(tmp_path) as m:
        assert (await m.post("/api/v1/consumers", {"id": "bob"}))[0] == 201
        await m.post("/api/v1/consumers/bob/deposits", {"amount": 50_000, "id": "dep-bob"})
        bobs = await run_json(
            m,
            "orders",
            "place",
            "--consumer",
            "bob",
            "--offer",
            "beijing-local",
            "--units",
            "1",
            "--hours",
            "1",
        )

        code, out, err = await run(m, "consumers", "token", "alice")
        assert code == 0, err
        assert "shown only this once" in err
        [text_token] = [
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.split(":", 1)[0].strip() == "token"
        ]
        assert text_token.startswith("cpc_")
        issued = await run_json(m, "consumers", "token", "alice")
        token_file = tmp_path / "alice.token"
        token_file.write_text(issued["token"] + "\n")
        token_file.chmod(0o600)
        mine = ("--token-file", str(token_file))

        placed = await run_json(
            m, "orders", "place", "--offer", "beijing-local", "--units", "1", "--hours", "2", *mine
        )
        assert (placed["consumer"], placed["state"]) == ("alice", "accepted")
        listed = await run_json(m, "orders", "list", *mine)
        assert [o["id"] for o in listed] == [placed["id"]]
        shown = await run_json(m, "orders", "show", placed["id"], *mine)
        assert shown["id"] == placed["id"]
        settled = await run_json(m, "orders", "settle", placed["id"], "--used-hours", "1")
        assert (settled["state"], settled["settled_amount"]) == ("settled", 2_000)
        code, out, err = await run(m, "orders", "show", bobs["id"], *mine)
        assert (code, "unknown_order" in err) == (1, True)
        code, out, err = await run(m, "orders", "cancel", bobs["id"], *mine)
        assert (code, "unknown_order" in err) == (1, True)
        code, out, err = await run(m, "orders", "list", "--consumer", "bob", *mine)
        assert (code, "forbidden" in err) == (1, True)

        monkeypatch.setenv("CPNODE_CONSUMER_TOKEN", issued["token"])
        again = await run_json(
            m,
            "orders",
            "place",
            "--offer",
            "beijing-local",
            "--source",
            "own:config",
            "--units",
            "1",
            "--hours",
            "1",
        )
        assert again["consumer"] == "alice"
        assert (await run_json(m, "orders", "cancel", again["id"]))["state"] == "cancelled"
        assert {o["id"] for o in await run_json(m, "orders", "list")} == {placed["id"], again["id"]}
        monkeypatch.delenv("CPNODE_CONSUMER_TOKEN")

        # Without a token the commands are the admin's, as before.
        assert {o["consumer"] for o in await run_json(m, "orders", "list")} == {"alice", "bob"}
        code, out, err = await run(
            m, "orders", "place", "--offer", "beijing-local", "--units", "1", "--hours", "1"
        )
        assert (code, "--consumer is needed" in err) == (2, True)

        listed_tokens = await run_json(m, "consumers", "tokens", "alice")
        assert [t["id"] for t in listed_tokens] == [text_token.split("_")[1], issued["id"]]
        assert issued["token"].split("_")[2] not in json.dumps(listed_tokens)
        revoked = await run_json(m, "consumers", "revoke-token", "alice", issued["id"])
        assert revoked["revoked_ts"] is not None
        code, out, err = await run(m, "consumers", "tokens", "alice")
        assert code == 0
        assert issued["id"] in out
        code, out, err = await run(m, "orders", "list", *mine)
        assert (code, "bad_consumer_token" in err) == (1, True)
        assert issued["token"] not in out + err
        code, out, err = await run(m, "consumers", "revoke-token", "alice", "NoSuchId")
        assert (code, "unknown_token" in err) == (1, True)
        code, out, err = await run(m, "consumers", "token", "nobody")
        assert (code, "unknown_consumer" in err) == (1, True)
        code, out, err = await run(m, "orders", "list", "--token-file", str(tmp_path / "missing.token"))
        assert (code, "cannot read the token file" in err) == (2, True)


def test_orders_help_names_the_token_file(capsys: pytest.CaptureFixture[str]) -> None:
    """`cpnode orders place --help` documents --token-file and $CPNODE_CONSUMER_TOKEN."""
    with pytest.raises(SystemExit):
        cpnode(["orders", "place", "--help"])
    text = capsys.readouterr().out
    assert "--token-file PATH" in text
    assert "CPNODE_CONSUMER_TOKEN" in text
