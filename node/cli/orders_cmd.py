"""`cpnode orders place|list|show|settle|cancel|sales`: consumers' orders through the running node.

`place` names an offer (`--offer`), or with `--match` states a demand (the flags of
`cpnode market match`) and lets the node order its best match.

Orders are driven by the node (it holds the federation sessions and talks to the seller), so these
commands call its API, with the admin token by default. With `--token-file PATH` (or
$CPNODE_CONSUMER_TOKEN) `place`, `list`, `show` and `cancel` act as the consumer whose token it is,
on its own orders only. `settle --used-hours` is the operator's correction (admin token): usage typed
by hand, recorded as such in the ledger; what a task runs is metered and settled by the node. A refused order exits 1 naming the reason (`insufficient_funds`,
`not_enough_free_units`, `credit_limit_exceeded`, `price_changed`, `partner_unavailable`, ...).
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote, urlencode

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_config_argument,
    add_json_argument,
    console,
    print_fields,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.market_cmd import SOURCE_HELP, add_demand_arguments, demand_from_args
from node.cli.node_api import CONSUMER_TOKEN_ENV, NodeRefused, add_token_argument, call, consumer_token
from node.money import format_money, format_rate
from node.times import format_ts

COLUMNS = ["order", "consumer", "offer", "source", "units", "hours (h)", "amount", "state", "settled"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode orders`."""
    parser = add_command(
        commands,
        "orders",
        description="Consumers' orders through the running node, with the admin token; with "
        f"--token-file PATH or ${CONSUMER_TOKEN_ENV}, place/list/show/cancel act as that "
        "token's consumer on its own orders.",
    )
    sub = parser.add_subparsers(title="orders commands", metavar="ACTION", required=True)
    place = sub.add_parser(
        "place", help="buy an offer of the merged offer view for a consumer, or the best match of a demand"
    )
    place.add_argument(
        "--consumer",
        help="the consumer to order for (needed with the admin token; a consumer token's own by default)",
    )
    form = place.add_mutually_exclusive_group(required=True)
    form.add_argument("--offer", help="offer id as `cpnode catalog show` lists it")
    form.add_argument(
        "--match", action="store_true", help="order the best match of the demand the flags below state"
    )
    place.add_argument("--units", type=int, required=True)
    place.add_argument("--hours", type=int, required=True)
    place.add_argument(
        "--id",
        help="order id NODE.RANDOM (with --match: a request id); repeating a place with the same id is safe",
    )
    demand = place.add_argument_group("demand (with --match; see `cpnode market match`)")
    add_demand_arguments(
        demand,
        size=False,
        source_help="with --offer: the offer's source (own:NAME or partner:NAME), needed if ambiguous; "
        f"with --match: {SOURCE_HELP}",
    )
    listing = sub.add_parser("list", help="orders, newest first")
    listing.add_argument("--consumer")
    show = sub.add_parser("show", help="one order with its receipt and settlement documents")
    settle = sub.add_parser(
        "settle", help="operator's correction: settle an accepted order for hours typed by hand"
    )
    settle.add_argument("--used-hours", type=int, required=True)
    cancel = sub.add_parser("cancel", help="cancel an accepted order (nothing is charged)")
    for parser_ in (show, settle, cancel):
        parser_.add_argument("order_id", metavar="ID")
    sales = sub.add_parser("sales", help="trades partners bought from this node")
    sales.add_argument("--partner")
    for parser_, handler in (
        (place, run_place),
        (listing, run_list),
        (show, run_show),
        (settle, run_settle),
        (cancel, run_cancel),
        (sales, run_sales),
    ):
        add_config_argument(parser_)
        add_json_argument(parser_)
        if parser_ not in (sales, settle):
            add_token_argument(parser_)
        parser_.set_defaults(handler=handler)


def _money_or_blank(minor: int | None, currency: str) -> str:
    return "" if minor is None else format_money(minor, currency)


def _print_order(order: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(order)
        return
    print_fields(
        [
            ("order", order["id"]),
            ("state", order["state"] + (f" ({order['reason']})" if order.get("reason") else "")),
            ("consumer", order["consumer"]),
            ("offer", f"{order['offer_id']} from {order['source']}"),
            (
                "units × hours",
                f"{order['units']} × {order['hours']} h at "
                f"{format_rate(order['price_per_unit_hour'], order['currency'], 'unit-h')}",
            ),
            ("amount", format_money(order["amount"], order["currency"])),
            (
                "settled",
                ""
                if order.get("settled_amount") is None
                else f"{format_money(order['settled_amount'], order['currency'])} for {order['used_hours']} h",
            ),
            ("placed", format_ts(order.get("created_ts"))),
            ("hold expires", format_ts(order.get("hold_expires_ts"))),
            ("receipt", order.get("receipt_sha256")),
            ("settlement", order.get("settlement_sha256")),
        ]
    )


def _source(settings: Any, offer_id: str, token: str | None) -> str:
    """The source of the one offer with this id in the merged view."""
    offers = call(settings, "GET", "/api/v1/offers", token=token)["offers"]
    sources = sorted({o["source"] for o in offers if o.get("id") == offer_id})
    if len(sources) != 1:
        found = ", ".join(sources) or "none"
        raise CliError(f"offer {offer_id!r} is offered by {found}; name one with --source", 2)
    return str(sources[0])


def run_place(args: argparse.Namespace) -> int:
    """Handler of `cpnode orders place`."""
    settings = settings_from_args(args)
    token = consumer_token(args)
    if token is None and not args.consumer:
        raise CliError("--consumer is needed with the admin token", 2)
    if args.match:
        return _place_match(settings, args, token)
    if args.source and len(args.source) > 1:
        raise CliError("an offer has one --source", 2)
    body: dict[str, Any] = {
        "offer_id": args.offer,
        "source": args.source[0] if args.source else _source(settings, args.offer, token),
        "units": args.units,
        "hours": args.hours,
    }
    if args.consumer:
        body["consumer"] = args.consumer
    if args.id:
        body["id"] = args.id
    try:
        order = call(settings, "POST", "/api/v1/orders", body, token=token)
    except NodeRefused as exc:
        hint = refusal_hint(settings, exc, token)
        raise CliError(f"{exc}\n{hint}" if hint else str(exc)) from None
    _print_order(order, args.json)
    return 0


def refusal_hint(settings: Any, refused: NodeRefused, token: str | None) -> str | None:
    """What to do about a refused order, in the operator's terms: the amounts involved in major
    units, and the command that fixes it (None when there is nothing to add)."""
    order = refused.body.get("order")
    if not isinstance(order, dict):
        return None
    amount = format_money(order["amount"], order["currency"])
    if refused.code == "credit_limit_exceeded":
        seller = str(order["source"]).removeprefix("partner:")
        return (
            f"{seller} holds what this node owes it against the credit limit its agreement gives this "
            f"node, and that limit defaults to 0: the order needs {amount} of credit. {seller}'s operator "
            f"raises it with `cpnode partners update {settings.node.name} --credit-limit N` "
            "(N in minor units) on their node."
        )
    if refused.code == "insufficient_funds":
        path = f"/api/v1/consumers/{quote(order['consumer'], safe='')}"
        try:
            account = call(settings, "GET", path, token=token)
        except CliError:
            return f"the order needs {amount}."
        available = format_money(account["available"], account["currency"])
        return (
            f"the order needs {amount}; {order['consumer']} has {available} available. Record a "
            f"deposit with `cpnode consumers deposit {order['consumer']} --amount N` (N in minor units)."
        )
    return None


def _place_match(settings: Any, args: argparse.Namespace, token: str | None) -> int:
    body: dict[str, Any] = {"demand": demand_from_args(args)}
    if args.consumer:
        body["consumer"] = args.consumer
    if args.id:
        body["id"] = args.id
    answer = call(settings, "POST", "/api/v1/orders", body, token=token)
    if args.json:
        print_json(answer)
        return 0
    for tried in answer["tried"]:
        if tried["outcome"] != "accepted":
            console().print(
                f"tried {tried['offer_id']} ({tried['source']}): {tried['outcome']}", markup=False
            )
    if answer.get("replayed"):
        console().print("this request was placed before; its orders as they are now:", markup=False)
    for order in answer["orders"]:
        _print_order(order, False)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode orders list`."""
    settings = settings_from_args(args)
    query = f"?{urlencode({'consumer': args.consumer})}" if args.consumer else ""
    orders = call(settings, "GET", f"/api/v1/orders{query}", token=consumer_token(args))["orders"]
    if args.json:
        print_json(orders)
    else:
        rows = [
            [
                o["id"],
                o["consumer"],
                o["offer_id"],
                o["source"],
                o["units"],
                o["hours"],
                format_money(o["amount"], o["currency"]),
                o["state"],
                _money_or_blank(o["settled_amount"], o["currency"]),
            ]
            for o in orders
        ]
        print_table(f"orders at {settings.node.name}", COLUMNS, rows)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode orders show`."""
    settings = settings_from_args(args)
    order = call(
        settings, "GET", f"/api/v1/orders/{quote(args.order_id, safe='')}", token=consumer_token(args)
    )
    if args.json:
        print_json(order)
    else:
        _print_order(order, False)
    return 0


def run_settle(args: argparse.Namespace) -> int:
    """Handler of `cpnode orders settle`."""
    settings = settings_from_args(args)
    path = f"/api/v1/orders/{quote(args.order_id, safe='')}/settle"
    order = call(settings, "POST", path, {"used_hours": args.used_hours})
    _print_order(order, args.json)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    """Handler of `cpnode orders cancel`."""
    settings = settings_from_args(args)
    path = f"/api/v1/orders/{quote(args.order_id, safe='')}/cancel"
    _print_order(call(settings, "POST", path, {}, token=consumer_token(args)), args.json)
    return 0


def run_sales(args: argparse.Namespace) -> int:
    """Handler of `cpnode orders sales`."""
    settings = settings_from_args(args)
    query = f"?{urlencode({'partner': args.partner})}" if args.partner else ""
    sales = call(settings, "GET", f"/api/v1/sales{query}")["sales"]
    if args.json:
        print_json(sales)
    else:
        rows = [
            [
                s["trade_id"],
                s["partner"],
                s["offer_id"],
                s["units"],
                s["hours"],
                format_money(s["amount"], s["currency"]),
                format_money(s["fee"], s["currency"]),
                s["state"],
                _money_or_blank(s["settled_amount"], s["currency"]),
            ]
            for s in sales
        ]
        columns = ["trade", "partner", "offer", "units", "hours (h)", "amount", "fee", "state", "settled"]
        print_table(f"sales of {settings.node.name}", columns, rows)
    return 0
