"""Every state machine of the node checked as data: orders and sales (node.trading.machine), ledger
holds (ledger.holds), trade claims (federation.claims), plugin health (connectors.health), login
challenges (federation.login) and migrations (node.migration.machine).

For each: the typed states and events are exactly those of its table; every state is reachable
from the start; final states lead nowhere else; every state that is not resting has a way out (for
orders and sales, an action in the explicit action map); and every event the code passes as a
literal to the machine's moves is in the table (a scan of the source, beside mypy's check of the
`Literal` types)."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast, get_args

import pytest

from connectors import health
from federation import claim_states, login
from ledger import holds
from ledger.records import TransferKind
from node.migration import machine as migration
from node.migration.core import MigrationCore
from node.migration.steps import Steps
from node.trading import machine
from node.trading.core import Trading
from node.trading.seller import Seller
from node.trading.settings import TradingSection
from node.trading.steps import OrderSteps

ROOT = Path(__file__).resolve().parent.parent


def reachable(table: Mapping[tuple[Any, Any], Any], start: Any) -> set[Any]:
    """States reachable from `start` through `table`."""
    seen, frontier = {start}, [start]
    while frontier:
        state = frontier.pop()
        for (source, _), target in table.items():
            if source == state and target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def exits(table: Mapping[tuple[Any, Any], Any], state: Any) -> set[Any]:
    """The states `state` can move to, other than itself."""
    return {target for (source, _), target in table.items() if source == state and target != state}


def literal_events(files: Iterable[Path], positions: Mapping[str, int]) -> list[tuple[str, str, str]]:
    """(file:line, function, literal) for each string literal at the event position of a call of one
    of `positions` (function name → index of its event argument), also through `x.db(function, ...)`
    (whose engine argument is implicit) and in both branches of a conditional expression."""
    found = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name, args = _name(node.func), list(node.args)
            if name == "db" and args:
                name, args = _name(args[0]), args[1:]
            if name not in positions or len(args) <= positions[name]:
                continue
            for value in _strings(args[positions[name]]):
                found.append((f"{path}:{node.lineno}", name, value))
    return found


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _strings(expr: ast.expr) -> list[str]:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return [expr.value]
    if isinstance(expr, ast.IfExp):
        return _strings(expr.body) + _strings(expr.orelse)
    return []


def returned_literals(path: Path, function: str) -> set[str]:
    """String literals a function or property named `function` returns (directly or by a conditional)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return) and inner.value is not None:
                    found.update(_strings(inner.value))
    return found


TRADING = sorted((ROOT / "node" / "trading").glob("*.py"))


def test_order_machine() -> None:
    """Orders: the table's states and events are the typed ones; all reachable from `unseen`; the
    final states lead nowhere; the non-resting states are exactly those with an action."""
    table = machine.ORDER_TRANSITIONS
    assert {s for key in table for s in (key[0],)} | set(table.values()) == set(get_args(machine.OrderState))
    assert {event for _, event in table} == set(get_args(machine.OrderEvent))
    assert reachable(table, machine.ORDER_START) == set(get_args(machine.OrderState))
    assert all(not exits(table, state) for state in machine.ORDER_FINAL)
    assert set(get_args(machine.OrderState)) - {machine.ORDER_START} == machine.ORDER_STATES
    # The steps read only the trading settings when made (for the trade batcher).
    steps = OrderSteps(cast(Trading, SimpleNamespace(settings=TradingSection(), service=None)))
    assert set(steps.actions) == machine.ORDER_STATES - machine.ORDER_RESTING
    assert all(exits(table, state) for state in machine.ORDER_STATES - machine.ORDER_FINAL)


def test_sale_machine() -> None:
    """Sales: the same checks, with the seller's action map (open, settling, voiding)."""
    table = machine.SALE_TRANSITIONS
    assert {key[0] for key in table} | set(table.values()) == set(get_args(machine.SaleState))
    assert {event for _, event in table} == set(get_args(machine.SaleEvent))
    assert reachable(table, machine.SALE_START) == set(get_args(machine.SaleState))
    assert all(not exits(table, state) for state in machine.SALE_FINAL)
    seller = Seller(cast(Trading, None))
    assert set(seller.actions) == machine.SALE_STATES - machine.SALE_RESTING
    assert all(exits(table, state) for state in machine.SALE_STATES - machine.SALE_FINAL)


def test_every_order_and_sale_event_the_code_uses_is_in_its_table() -> None:
    """Each literal event or state passed to an order or sale move in node/trading exists in its
    machine, and every event of the tables is used somewhere (no dead transition)."""
    order_events = literal_events(
        TRADING, {"move": 1, "move_holding": 1, "move_order": 2, "order_transition": 1}
    )
    order_states = literal_events(TRADING, {"move_order": 1})
    sale_events = literal_events(TRADING, {"move_sale": 1, "sale_transition": 1})
    assert len(order_events) >= 15
    assert len(sale_events) >= 8
    unknown = [e for e in order_events if e[2] not in get_args(machine.OrderEvent)]
    unknown += [e for e in order_states if e[2] not in get_args(machine.OrderState)]
    unknown += [e for e in sale_events if e[2] not in get_args(machine.SaleEvent)]
    assert unknown == []
    # Sale settlements take their event from decisions.Apply.event, a typed property.
    by_property = returned_literals(ROOT / "node" / "trading" / "decisions.py", "event")
    assert by_property == {"settle", "cancel"}
    assert {e[2] for e in order_events} == set(get_args(machine.OrderEvent))
    assert {e[2] for e in sale_events} | by_property == set(get_args(machine.SaleEvent))


def test_hold_machine() -> None:
    """Holds: every state is reachable from pending by a resolving kind, each final state has the
    refusal its resolution answers, and pending, the only open state, is resolved by every kind
    (the sweeper's expire included, so no hold stays open past its deadline)."""
    table = holds.TRANSITIONS
    assert reachable(table, holds.HoldState.PENDING) == set(holds.HoldState)
    finals = set(holds.HoldState) - {holds.HoldState.PENDING}
    assert all(not exits(table, state) for state in finals)
    assert set(holds.REFUSALS) == finals
    resolving = {TransferKind.POST, TransferKind.VOID, TransferKind.EXPIRE}
    assert {kind for state, kind in table if state is holds.HoldState.PENDING} == resolving
    assert {kind: target for (_, kind), target in table.items()} == holds.STATE_AFTER
    for state in finals:
        assert holds.transition(state, TransferKind.POST) == holds.REFUSALS[state]


def test_claim_machine() -> None:
    """Trade claims: typed states and events are the table's; free leads to every state; answered
    is final (a claim on it answers the stored answer); a running claim can finish or be released;
    a free or lapsed claim can be answered in its own write (a trade done in one transaction); the
    code's literal events are the table's."""
    table = claim_states.TRANSITIONS
    assert {key[0] for key in table} | set(table.values()) == set(get_args(claim_states.ClaimState))
    assert {event for _, event in table} == set(get_args(claim_states.ClaimEvent))
    assert reachable(table, "free") == set(get_args(claim_states.ClaimState)) - {"lapsed"}
    assert not exits(table, "answered")
    assert exits(table, "in_progress") == {"answered", "free", "refused"}
    assert exits(table, "lapsed") == {"in_progress", "answered"}
    assert exits(table, "free") == {"in_progress", "answered"}
    used = literal_events([ROOT / "federation" / "claims.py"], {"transition": 1})
    assert used
    assert {e[2] for e in used} <= set(get_args(claim_states.ClaimEvent))


def test_plugin_health_machine() -> None:
    """Plugin health: typed states and events are the table's; every state is reachable from
    starting; removed is final; every other state takes every event; the code's events exist."""
    table = health.TRANSITIONS
    assert {key[0] for key in table} | set(table.values()) == set(get_args(health.PluginState))
    assert {event for _, event in table} == set(get_args(health.HealthEvent))
    assert reachable(table, "starting") == set(get_args(health.PluginState))
    assert not exits(table, "removed")
    for state in set(get_args(health.PluginState)) - {"removed"}:
        assert {event for source, event in table if source == state} == set(get_args(health.HealthEvent))
    files = sorted((ROOT / "connectors").glob("*.py"))
    used = literal_events(files, {"next_state": 1, "sources": 0})
    assert used
    assert {e[2] for e in used} <= set(get_args(health.HealthEvent))


def test_login_challenge_machine() -> None:
    """Login challenges: typed states and events are the table's; issued is the only open state and
    ends used or expired; the code's literal events exist in the table."""
    table = login.CHALLENGE_TRANSITIONS
    assert {key[0] for key in table} | set(table.values()) == set(get_args(login.ChallengeState))
    assert {event for _, event in table} == set(get_args(login.ChallengeEvent))
    assert reachable(table, "issued") == set(get_args(login.ChallengeState))
    assert exits(table, "issued") == {"used", "expired"}
    assert not exits(table, "used")
    assert not exits(table, "expired")
    files = [ROOT / "federation" / "login.py", *sorted((ROOT / "federation" / "store").glob("*.py"))]
    used = literal_events(files, {"transition": 1})
    assert {e[2] for e in used} == {"consume"}


def test_migration_machine() -> None:
    """Migrations: typed states and events are the table's; every state is reachable from planned;
    the final states lead nowhere; every state before the cutover can fail into a rollback, and all
    but the cutover can be cancelled; every undo ends rolled back, cancelled or needing attention;
    each forward state steps to the next one of figure 6."""
    table = migration.TRANSITIONS
    states = set(get_args(migration.MigrationState))
    assert {key[0] for key in table} | set(table.values()) == states
    assert {event for _, event in table} == set(get_args(migration.MigrationEvent))
    assert reachable(table, migration.START) == states
    assert all(not exits(table, state) for state in migration.FINAL)
    assert all(exits(table, state) for state in states - migration.FINAL)
    for state in migration.UNDOABLE:
        assert table[(state, "fail")] == "rolling_back"
        assert table.get((state, "cancel")) == (None if state == "cutover" else "cancelling")
    assert exits(table, "rolling_back") == {"rolled_back", "needs_attention"}
    assert exits(table, "cancelling") == {"cancelled", "needs_attention"}
    assert exits(table, "needs_attention") == {"rolling_back"}
    for before, after in itertools.pairwise(migration.FORWARD):
        assert table[(before, migration.forward_event(before))] == after
    assert migration.cancel_target("cancelling") is None
    assert migration.cancel_target("cancelled") is None
    with pytest.raises(migration.MigrationTransitionError):
        migration.cancel_target("cutover")
    with pytest.raises(migration.MigrationTransitionError):
        migration.next_state("completed", "fail")
    steps = Steps(cast(MigrationCore, None))
    assert set(steps.actions) == migration.STATES - migration.RESTING


def test_every_migration_event_the_code_uses_is_in_its_table() -> None:
    """Each literal event passed to a migration move in node/migration exists in the table, and every
    event but the forward steps' (taken through `forward_event`) is used by name somewhere."""
    files = sorted((ROOT / "node" / "migration").glob("*.py"))
    used = literal_events(files, {"move": 1, "move_migration": 2})
    assert len(used) >= 12
    assert [e for e in used if e[2] not in get_args(migration.MigrationEvent)] == []
    by_forward_event = {"path_ready", "deploy", "quiesce"}
    by_undo_event = {"rolled_back", "cancelled"}  # undo.run ends with undo_event(state)
    named = {e[2] for e in used} | by_forward_event | by_undo_event
    assert named == set(get_args(migration.MigrationEvent))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("t.db(store.move_sale, sale, 'held', now)", [("move_sale", "held")]),
        ("self.move(order, 'a' if x else 'b')", [("move", "a"), ("move", "b")]),
        ("move_order(order.id, 'accepted', 'settle', now)", [("move_order", "settle")]),
        ("self.move(order, event)", []),
    ],
)
def test_the_scan_finds_literal_events(tmp_path: Path, source: str, expected: list[tuple[str, str]]) -> None:
    """The source scan reads events through `db(...)` and conditionals, and ignores non-literals."""
    path = tmp_path / "probe.py"
    path.write_text(source + "\n", encoding="utf-8")
    found = literal_events([path], {"move": 1, "move_sale": 1, "move_order": 2})
    assert [(name, value) for _, name, value in found] == expected
