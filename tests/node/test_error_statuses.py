"""HTTP statuses live in one table at the node's HTTP edge (node.http.statuses): the leaf packages'
errors carry only a code, and every coded error class the packages define has a status there."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from connectors.statuses import STATUS_BY_ERROR as CONNECTOR_STATUSES
from connectors.statuses import status_in
from federation.errors import PeerError, TooLargeError
from ledger.errors import StorageError
from ledger.store.group import LedgerBusy
from node.errors import CodedError
from node.http.errors import ApiError
from node.http.statuses import STATUS_BY_ERROR, status_for
from node.trading.errors import PartnerFaultError, Refusal

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("node", "federation", "connectors", "ledger")
LEAVES = ("federation", "connectors", "ledger")
# Errors with a code that never reach an HTTP answer of the node (the data express's own process
# and its client), so they are left out of the table.
NOT_SERVED = {"connectors.express.errors"}


def _classes_assigning(name: str, packages: tuple[str, ...]) -> list[tuple[str, str]]:
    """(module, class) for every class in `packages` whose body assigns the attribute `name`, or
    whose header declares it (`class X(Base, code="x")`)."""
    found = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and (
                    any(keyword.arg == name for keyword in node.keywords)
                    or any(
                        isinstance(stmt, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets)
                        for stmt in node.body
                    )
                ):
                    found.append((module.removesuffix(".__init__"), node.name))
    return found


def test_the_leaf_packages_carry_no_http_status() -> None:
    """No class in federation, connectors or ledger says which HTTP status it is."""
    assert _classes_assigning("http_status", LEAVES) == []


CODED = [
    (m, c)
    for m, c in _classes_assigning("code", PACKAGES)
    if m not in NOT_SERVED and (m, c) != ("federation.errors", "CodedError")  # the bare base: no status
]


def test_the_scan_finds_the_coded_errors() -> None:
    """The scan below sees the errors of every package (so an empty scan cannot pass it)."""
    modules = {module.split(".")[0] for module, _ in CODED}
    assert modules == set(PACKAGES)
    assert ("ledger.store.group", "LedgerBusy") in CODED


@pytest.mark.parametrize(("module", "name"), CODED)
def test_every_coded_error_has_a_status(module: str, name: str) -> None:
    """Each coded error class resolves to a 4xx or 5xx through the table (itself or a base)."""
    cls = getattr(importlib.import_module(module), name)
    status = status_in(STATUS_BY_ERROR, cls.__new__(cls))
    assert status is not None, (module, name)
    assert 400 <= status < 600, (module, name, status)


def test_the_nearest_class_wins() -> None:
    """A subclass's own entry beats its base's; one without an entry takes its base's."""
    assert status_for(TooLargeError("big")) == 413
    assert status_for(PeerError("bad answer")) == 502
    assert status_for(PartnerFaultError("unreadable")) == 502  # not RefusedError's 409
    assert status_for(LedgerBusy("full")) == status_for(StorageError("down")) == 503


def test_errors_raised_with_a_status_keep_it() -> None:
    """ApiError and the seller's Refusal answer the status they were raised with."""
    assert status_for(ApiError(418, "teapot", "short and stout")) == 418
    assert status_for(Refusal(422, "bad_terms", "no")) == 422


def test_an_uncoded_error_has_no_status() -> None:
    """A plain exception is not in the table: the middleware answers it as a logged 500."""
    assert status_for(ValueError("x")) is None
    assert status_for(CodedError("x")) is None


def test_the_node_table_includes_the_connectors_table() -> None:
    """A connectors error gets the same status from the node as from the plugin service."""
    assert CONNECTOR_STATUSES.items() <= STATUS_BY_ERROR.items()
