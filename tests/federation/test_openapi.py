"""The OpenAPI document of /fed/v1 is valid, real responses match it, and a bounded schemathesis run
against a real node process finds no 5xx and no undocumented status or shape."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from federation import store
from federation.openapi import openapi_document
from tests.support.examples import examples
from tests.support.federation import FED_TOML, FakePeer, nodes, offer_toml
from tests.support.nodes import NodeProcess, make_node_dir

DOCUMENT = openapi_document()


def schema_for(name: str) -> Draft202012Validator:
    """A validator for one component schema, resolving references inside the document."""
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    )


def test_document_is_valid_openapi() -> None:
    """The served OpenAPI document passes the OpenAPI 3.1 validator."""
    validate(DOCUMENT)


async def test_real_responses_match_the_document(tmp_path: Path, fake_peer: FakePeer) -> None:
    """Key document, challenge, session, catalog head, catalog and errors from a real node match their schemas."""
    async with nodes(tmp_path, ["alpha"]) as (alpha,):
        assert alpha.ctx is not None
        store.add_partner(alpha.ctx.engine, fake_peer.partner(), int(time.time()))
        served: dict[str, Any] = {}
        status, served["KeyDocument"] = await fake_peer.send("GET", alpha.url + "/fed/v1/keys")
        status, openapi = await fake_peer.send("GET", alpha.url + "/fed/v1/openapi.json")
        assert openapi == DOCUMENT
        url = alpha.url + "/fed/v1/login/challenge"
        status, served["Challenge"] = await fake_peer.send("POST", url, b"", fake_peer.sign("POST", url))
        token = await fake_peer.login(alpha.url, "alpha")
        for path, name in (("/fed/v1/catalog/head", "CatalogHead"), ("/fed/v1/catalog", "Catalog")):
            url = alpha.url + path
            status, served[name] = await fake_peer.send(
                "GET", url, b"", fake_peer.sign("GET", url, token=token)
            )
            assert status == 200
        status, served["Error"] = await fake_peer.send("GET", alpha.url + "/fed/v1/catalog")
        assert status == 401
        for name, body in served.items():
            errors = list(schema_for(name).iter_errors(body))
            assert not errors, (name, errors[:3])
        assert len(served["Catalog"]["offers"]) == 2


@pytest.fixture(name="node_process")
def fixture_node_process(tmp_path: Path) -> Iterator[str]:
    """A real node process with offers; yields its URL."""
    process = NodeProcess(make_node_dir(tmp_path, "alpha", extra_toml=FED_TOML + offer_toml("alpha")))
    url = process.start()
    try:
        yield url
    finally:
        process.stop()


def test_schemathesis_finds_no_server_errors(node_process: str) -> None:
    """Generated requests to every /fed/v1 operation get documented answers, never a 5xx (bounded run)."""
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    # An operation the schema cannot describe is an Err, which has no .ok(): the test fails there.
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 20
    for operation in operations:

        @settings(
            max_examples=examples(15), deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=node_process, timeout=10)
            assert response.status_code < 500, (
                case.method,
                case.path,
                response.status_code,
                response.text[:200],
            )
            case.validate_response(response)

        check()
