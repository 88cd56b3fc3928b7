"""Demo step of matching: alice states a demand on Beijing instead of naming an offer; Beijing ranks
its own and Shanghai's offers that satisfy it, says why the others were left out, and orders the
best match."""

from __future__ import annotations

import json

from node.demo.stage import DemoError, Stage
from node.money import format_money

# Two units of an NVIDIA flavor with 8 chips, for one hour, cheapest first.
DEMAND = ("--units", "2", "--hours", "1", "--chip-vendor", "nvidia", "--min-chips-per-unit", "8")


def match_and_buy(stage: Stage) -> None:
    """`cpnode market match` on Beijing, then `cpnode orders place --match` orders the best match."""
    stage.title(
        "alice states a demand on Beijing: matches across own and partner offers (cpnode market match)"
    )
    config = ("--config", str(stage.nodes["beijing"].config))
    stage.cli(["market", "match", *DEMAND, *config])
    result = json.loads(stage.cli(["market", "match", *DEMAND, "--json", *config], show=False))
    sources = {match["source"].split(":")[0] for match in result["matches"]}
    if sources != {"own", "partner"} or not result["excluded"]:
        raise DemoError(f"expected own and partner matches and some exclusions: {result}")
    best = result["matches"][0]
    answer = json.loads(
        stage.cli(
            ["orders", "place", "--consumer", "alice", "--match", *DEMAND, "--json", *config],
            show=False,
            echo=True,
        )
    )
    [order] = answer["orders"]
    stage.say(
        f"order {order['id']}: {order['state']}, {order['offer_id']} from {order['source']}, "
        f"{format_money(order['amount'], order['currency'])} held"
    )
    if (order["offer_id"], order["source"], order["state"]) != (best["offer_id"], best["source"], "accepted"):
        raise DemoError(f"the best match {best['offer_id']} was not the order accepted: {order}")
