"""The compute identifier: encoding, parsing, validation errors and the registration claim."""

from __future__ import annotations

import dataclasses

import pytest

from connectors.errors import IdentifierError
from connectors.identifier import ComputeIdentifier, RegistrationClaim, mod97_check, uscc_check_char, validate

GOOD = ComputeIdentifier(
    city="440300",
    industry="I",
    enterprise="91350100M000100Y43",
    resource="GPU",
    datacenter="SZ01",
    service="VM",
    compute_tflops=7916,
    storage_gib=30720,
    network_gbps=400,
    chip="NVIDIA-H100",
    serial="SN8H100A",
)


def test_round_trip() -> None:
    """An identifier parses back to exactly the parts it was encoded from."""
    text = GOOD.encode()
    assert text.startswith(
        "CPI1.440300.I.91350100M000100Y43.GPU.SZ01.VM.C7916.S30720.N400.NVIDIA-H100.SN8H100A."
    )
    assert ComputeIdentifier.parse(text) == GOOD
    assert validate(text) is None


def test_uscc_check_character_matches_the_published_example() -> None:
    """The enterprise check follows GB 32100 (a published example code verifies)."""
    assert uscc_check_char("91350100M000100Y4") == "3"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("city", "44030", "6-digit"),
        ("industry", "Z", "A–T"),
        ("enterprise", "91350100M000100Y44", "check character"),
        ("resource", "TPU", "one of"),
        ("service", "XX", "one of"),
        ("compute_tflops", -1, "0–"),
        ("chip", "nvidia-h100", "A–Z"),
    ],
)
def test_bad_fields_name_the_field(field: str, value: object, message: str) -> None:
    """Each invalid part is refused with an error naming that field."""
    with pytest.raises(IdentifierError, match=field) as info:
        dataclasses.replace(GOOD, **{field: value})  # type: ignore[arg-type]  # wrong types on purpose
    assert message in str(info.value)


def test_any_single_character_change_is_caught() -> None:
    """Changing any one character of a valid identifier makes it invalid (check digits or syntax)."""
    text = GOOD.encode()
    for index, char in enumerate(text):
        replacement = "7" if char != "7" else "8"
        changed = text[:index] + replacement + text[index + 1 :]
        assert validate(changed) is not None, f"change at {index} went unnoticed"


def test_parse_errors_are_specific() -> None:
    """Wrong version, field count and check digits each get their own message."""
    text = GOOD.encode()
    with pytest.raises(IdentifierError, match="start with"):
        ComputeIdentifier.parse("CPI2" + text[4:])
    with pytest.raises(IdentifierError, match="fields"):
        ComputeIdentifier.parse(text + ".X")
    body = text.rsplit(".", 1)[0]
    wrong = "00" if mod97_check(body) != "00" else "01"
    with pytest.raises(IdentifierError, match="check digits"):
        ComputeIdentifier.parse(f"{body}.{wrong}")


def test_registration_claim_checks_shape_identifier_and_time() -> None:
    """A registration document round-trips, and expired or malformed ones are refused."""
    claim = RegistrationClaim(
        issuer="node-a", pool="gpu-1", identifier=GOOD.encode(), issued_ts=100, expires_ts=200
    )
    assert RegistrationClaim.from_document(claim.document(), now_ts=150) == claim
    with pytest.raises(IdentifierError, match="not valid now"):
        RegistrationClaim.from_document(claim.document(), now_ts=200)
    with pytest.raises(IdentifierError, match="pool"):
        RegistrationClaim.from_document({**claim.document(), "pool": 5}, now_ts=150)
    with pytest.raises(IdentifierError, match=r"check digits|field"):
        RegistrationClaim.from_document(
            {**claim.document(), "identifier": GOOD.encode()[:-1] + "0"}, now_ts=150
        )
