"""Demo steps of federation: three platforms trust each other pairwise except Beijing–Guangzhou,
log in to each other, exchange signed catalogs, and show each one's merged offer view."""

from __future__ import annotations

import json

from node.demo.stage import DemoError, Stage

# (node, partner, agreement options the node grants the partner)
TRUST: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("beijing", "shanghai", ()),
    ("shanghai", "beijing", ("--markup-bp", "500")),
    ("shanghai", "guangzhou", ()),
    ("guangzhou", "shanghai", ("--tags", "inference")),
)
OFFERS: dict[str, list[tuple[str, str, int, int, str]]] = {
    # node: [(pool, chip model, chips per unit, price per unit-hour in fen, tag)]
    "beijing": [
        ("bj-gpu", "A800", 8, 2_400_000, "training"),
        ("bj-cpu", "Kunpeng-920", 0, 18_000, "general"),
    ],
    "shanghai": [
        ("sh-gpu", "H800", 8, 3_100_000, "training"),
        ("sh-npu", "Ascend-910B", 8, 1_900_000, "inference"),
    ],
    "guangzhou": [
        ("gz-npu", "Ascend-910B", 4, 950_000, "inference"),
        ("gz-gpu", "L40S", 4, 780_000, "rendering"),
    ],
}
VENDORS = {
    "A800": "nvidia",
    "H800": "nvidia",
    "L40S": "nvidia",
    "Ascend-910B": "huawei",
    "Kunpeng-920": "huawei",
}


def _config(name: str) -> str:
    lines = ["[federation]", 'allow_networks = ["127.0.0.0/8"]', "sync_interval_s = 2", ""]
    for index, (pool, chip, chips, price, tag) in enumerate(OFFERS[name]):
        lines += [
            "[[offers]]",
            f'id = "{name}-{index}"',
            f'pool = "{pool}"',
            f'region = "{name}"',
            f'chip_vendor = "{VENDORS[chip]}"',
            f'chip_model = "{chip}"',
            f"chips_per_unit = {chips}",
            "cpus = 96",
            "memory_mib = 786432",
            "storage_gib = 4000",
            f"free_units = {12 - 3 * index}",
            f"price_per_unit_hour = {price}",
            'currency = "CNY"',
            'networks = ["rdma"]',
            f'tags = ["{tag}"]',
            "",
        ]
    return "\n".join(lines)


def configure(stage: Stage) -> None:
    """Give each node its federation settings and the offers it sells."""
    stage.title("Federation settings and offers (node.toml)")
    for name, node in stage.nodes.items():
        with node.config.open("a", encoding="utf-8") as handle:
            handle.write("\n" + _config(name) + "\n")
        stage.say(f"{name:<10} sells {', '.join(pool for pool, *_ in OFFERS[name])}")


def pin_partners(stage: Stage) -> None:
    """Operators pin partners by name, URL and public key; Beijing and Guangzhou do not trust each other."""
    stage.title("Operators pin their partners (cpnode partners add)")
    keys = {
        name: json.loads(stage.cli(["keys", "show", "--json", "--config", str(node.config)], show=False))[
            "public_key"
        ]
        for name, node in stage.nodes.items()
    }
    for name, partner, options in TRUST:
        stage.cli(
            [
                "partners",
                "add",
                partner,
                "--url",
                stage.nodes[partner].url,
                "--key",
                keys[partner],
                *options,
                "--config",
                str(stage.nodes[name].config),
            ]
        )


def exchange_catalogs(stage: Stage) -> None:
    """Each node logs in to its partners and fetches the catalogs made for it."""
    stage.title("Log in and exchange signed catalogs (cpnode catalog sync)")
    for name, node in stage.nodes.items():
        stage.say(f"{name}:")
        rows = json.loads(stage.cli(["catalog", "sync", "--json", "--config", str(node.config)], show=False))
        for row in rows:
            stage.say(f"  {row['partner']:<10} {row['outcome']:<10} catalog v{row['version']}")
            if row["outcome"] not in ("ok", "unchanged"):
                raise DemoError(f"{name} could not sync {row['partner']}: {row['error']}")


def show_offer_views(stage: Stage) -> None:
    """Print each node's merged offer view; the untrusted pair sees nothing of each other."""
    for name, node in stage.nodes.items():
        stage.title(f"Offers seen by {name} (cpnode catalog show)")
        stage.cli(["catalog", "show", "--config", str(node.config)])
        rows = json.loads(stage.cli(["catalog", "show", "--json", "--config", str(node.config)], show=False))
        partners = {row["partner"] for row in rows if row["partner"]}
        expected = {partner for node_, partner, _ in TRUST if node_ == name}
        if partners != expected:
            raise DemoError(f"{name} sees offers of {sorted(partners)}, expected {sorted(expected)}")
    stage.say("beijing and guangzhou did not pin each other: neither sees the other's offers.")
