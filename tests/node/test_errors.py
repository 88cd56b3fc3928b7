"""One error base for the node and federation: both trees are `CodedError`s with a code, a message
and details; a field error names its field in the message and in the details."""

from __future__ import annotations

import pytest

from federation.errors import DocumentError, FederationError, PeerError
from node.errors import CodedError, FieldError
from node.services.errors import ServiceError, ServiceInputError
from node.tasks.errors import UnknownTaskError


def test_federation_and_node_errors_share_one_base() -> None:
    """A federation error and a node package's error are both CodedError, each with its class code,
    an overriding code when given, and details (empty unless given)."""
    for error in (DocumentError("bad"), UnknownTaskError("no task"), PeerError("down", status=502)):
        assert isinstance(error, CodedError)
        assert error.details == {}
    assert DocumentError("bad").code == "bad_document"
    assert FederationError("x", "bad_name").code == "bad_name"
    assert UnknownTaskError("no", code="unknown_consumer").code == "unknown_consumer"
    assert PeerError("down", status=502).status == 502


def test_a_field_error_names_its_field() -> None:
    """ServiceInputError is a FieldError: `field: reason` as message, the field in details, its own
    code unless one is given, and still a ValueError and a ServiceError."""
    error = ServiceInputError("weights", "name at least one replica")
    assert isinstance(error, FieldError)
    assert isinstance(error, ServiceError)
    assert isinstance(error, ValueError)
    assert str(error) == "weights: name at least one replica"
    assert (error.field, error.reason, error.details) == (
        "weights",
        "name at least one replica",
        {"field": "weights"},
    )
    assert error.code == "bad_service"
    assert ServiceInputError("weights", "zero", "bad_weight").code == "bad_weight"
    with pytest.raises(ValueError, match=r"^name: too long$"):
        raise ServiceInputError("name", "too long")
