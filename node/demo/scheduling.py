"""Demo steps of scheduling: the chengdu node's network view (the simulated network controller's
topology, one link failed earlier), then one demand placed by the cost, nearest and co-schedule
strategies on three different pools, each with its explanation, and two versions of a registered
strategy split A/B."""

from __future__ import annotations

import json
from typing import Any

from node.demo.connectors import NODE
from node.demo.stage import DemoError, Stage

# One unit for one hour; the users are mostly in chengdu; 2 TB of input data lives in beijing; the
# work takes 1 h on an offer of metric score 1.00 (one A100).
DEMAND = (
    "--units", "1", "--hours", "1",
    "--user-site", "chengdu:3", "--user-site", "guangzhou:1",
    "--data-site", "beijing", "--data-mb", "2000000", "--compute-s", "3600",
)  # fmt: skip
STRATEGIES = ("cost", "nearest", "coschedule")


def _config(stage: Stage) -> tuple[str, str]:
    return "--config", str(stage.nodes[NODE].config)


def network_view(stage: Stage) -> None:
    """`cpnode network show --refresh`: every network plugin's topology merged, as matching reads it."""
    stage.title(f"{NODE}'s network view: the network plugins' topologies merged (cpnode network show)")
    stage.cli(["network", "show", "--refresh", *_config(stage)])
    stage.cli(["network", "path", "beijing", "chengdu", *_config(stage)])


def three_strategies(stage: Stage) -> None:
    """The same demand by cost, nearest and co-schedule: three different pools, each explained."""
    stage.title("One demand, three strategies: cost, nearest, co-schedule (cpnode market match --strategy)")
    chosen: dict[str, dict[str, Any]] = {}
    for strategy in STRATEGIES:
        args = ["market", "match", *DEMAND, "--strategy", strategy, *_config(stage)]
        stage.cli(args)
        result = json.loads(stage.cli([*args, "--json"], show=False))
        if not result["matches"]:
            raise DemoError(f"the {strategy} strategy found nothing: {result['excluded_by_reason']}")
        chosen[strategy] = result["matches"][0]
    pools = {strategy: match["pool"] for strategy, match in chosen.items()}
    stage.say("first choices: " + ", ".join(f"{s} → {p} ({chosen[s]['site']})" for s, p in pools.items()))
    if len(set(pools.values())) != len(STRATEGIES):
        raise DemoError(f"the three strategies should choose three different pools: {pools}")


def ab_split(stage: Stage) -> None:
    """Register two versions of a composite strategy and split consumers between them."""
    stage.title("Strategy management: two versions of a strategy, consumers split A/B (cpnode strategies)")
    config = _config(stage)
    stage.cli(["strategies", "add", "balanced", "--kind", "composite", "--params",
               '{"weights": {"cost": 1, "latency": 1}}', "--note", "price and latency equal", *config])  # fmt: skip
    stage.cli(["strategies", "add", "balanced", "--kind", "composite", "--params",
               '{"weights": {"cost": 1, "latency": 3, "load": 1}}', "--note", "latency first", *config])  # fmt: skip
    stage.cli(["strategies", "split", "balanced", "1=50", "2=50", *config])
    stage.cli(["strategies", "list", *config])
