"""Compute identifier (算力标识), syntax version 1, and the pool registration claim it rides in.

There is no public machine syntax for the industry's identifier dimensions, so cpnode defines one.
An identifier is 13 fields joined by `.`, upper case ASCII only:

    CPI1.<city>.<industry>.<enterprise>.<resource>.<dc>.<service>.C<compute>.S<storage>.N<network>.<chip>.<serial>.<check>

| # | field      | syntax                       | meaning |
|---|------------|------------------------------|---------|
| 1 | version    | `CPI1`                       | syntax version 1 |
| 2 | city       | 6 digits                     | GB/T 2260 administrative division code (440300 = Shenzhen) |
| 3 | industry   | one letter A–T               | GB/T 4754-2017 industry section (I = IT services) |
| 4 | enterprise | 18 chars, GB 32100 charset   | unified social credit code, its check character verified |
| 5 | resource   | GPU NPU CPU DCU MLU XPU FPGA ASIC | resource type |
| 6 | dc         | 2–12 of A–Z 0–9              | data centre code chosen by the operator |
| 7 | service    | BM VM CT PA                  | bare metal, virtual machine, container, platform |
| 8 | compute    | `C` + integer                | dense FP16 TFLOPS (CPU: measured FP32, rounded) |
| 9 | storage    | `S` + integer                | storage, GiB |
| 10| network    | `N` + integer                | network, Gbit/s |
| 11| chip       | 2–32 of A–Z 0–9 `-`          | chip type (chip catalogue key, upper case) |
| 12| serial     | 1–32 of A–Z 0–9 `-`          | chip or unit serial |
| 13| check      | 2 digits                     | ISO 7064 MOD 97-10 over fields 1–12 and their dots |

The check maps digits to themselves, A–Z to 10–35, `.` to 36 and `-` to 37, reads the result as
one decimal number N and sets check = 98 − (N·100 mod 97), so any single changed character or
swap of neighbours is caught. Integers have no leading zeros and are at most 10^9.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from connectors.errors import IdentifierError

VERSION = "CPI1"
RESOURCE_TYPES = ("GPU", "NPU", "CPU", "DCU", "MLU", "XPU", "FPGA", "ASIC")
SERVICE_TYPES = ("BM", "VM", "CT", "PA")
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_MAX_INT = 10**9
_INT = r"(0|[1-9]\d{0,9})"
_PATTERNS: dict[str, tuple[str, str]] = {
    "city": (r"\d{6}", "must be a 6-digit GB/T 2260 code"),
    "industry": (r"[A-T]", "must be one GB/T 4754 section letter A–T"),
    "enterprise": (f"[{USCC_CHARSET}]{{18}}", "must be an 18-character unified social credit code"),
    "resource": ("|".join(RESOURCE_TYPES), f"must be one of {', '.join(RESOURCE_TYPES)}"),
    "datacenter": (r"[A-Z0-9]{2,12}", "must be 2–12 characters A–Z, 0–9"),
    "service": ("|".join(SERVICE_TYPES), f"must be one of {', '.join(SERVICE_TYPES)}"),
    "compute_tflops": ("C" + _INT, "must be 'C' and an integer (TFLOPS)"),
    "storage_gib": ("S" + _INT, "must be 'S' and an integer (GiB)"),
    "network_gbps": ("N" + _INT, "must be 'N' and an integer (Gbit/s)"),
    "chip": (r"[A-Z0-9][A-Z0-9-]{1,31}", "must be 2–32 characters A–Z, 0–9, '-'"),
    "serial": (r"[A-Z0-9][A-Z0-9-]{0,31}", "must be 1–32 characters A–Z, 0–9, '-'"),
}
_PREFIXED = {"compute_tflops": "C", "storage_gib": "S", "network_gbps": "N"}


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a credit code."""
    total = sum(USCC_CHARSET.index(ch) * w for ch, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def mod97_check(text: str) -> str:
    """The two-digit ISO 7064 MOD 97-10 check of `text` (digits, A–Z, '.', '-')."""
    remainder = 0
    for ch in text:
        if ch.isdigit():
            value = ch
        elif "A" <= ch <= "Z":
            value = str(ord(ch) - 55)
        elif ch in ".-":
            value = "36" if ch == "." else "37"
        else:
            raise IdentifierError(f"character {ch!r} is not allowed in a compute identifier")
        remainder = int(str(remainder) + value) % 97
    return f"{98 - (remainder * 100) % 97:02d}"


@dataclass(frozen=True)
class ComputeIdentifier:
    """The parts of a compute identifier; `encode()` gives its text, `parse()` reads one back."""

    city: str
    industry: str
    enterprise: str
    resource: str
    datacenter: str
    service: str
    compute_tflops: int
    storage_gib: int
    network_gbps: int
    chip: str
    serial: str

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            text = f"{_PREFIXED[f.name]}{value}" if f.name in _PREFIXED else value
            if f.name in _PREFIXED and (isinstance(value, bool) or not isinstance(value, int)):
                raise IdentifierError(f"field {f.name!r} must be an integer, got {value!r}")
            if f.name in _PREFIXED and not 0 <= value <= _MAX_INT:
                raise IdentifierError(f"field {f.name!r} must be 0–{_MAX_INT}, got {value}")
            pattern, rule = _PATTERNS[f.name]
            if not isinstance(text, str) or not re.fullmatch(pattern, text):
                raise IdentifierError(f"field {f.name!r} {rule}, got {value!r}")
        if uscc_check_char(self.enterprise[:17]) != self.enterprise[17]:
            raise IdentifierError(
                f"field 'enterprise' has a wrong check character: {self.enterprise!r} "
                f"should end in {uscc_check_char(self.enterprise[:17])!r}"
            )

    def encode(self) -> str:
        """The identifier's text, check digits included."""
        parts = [VERSION] + [
            f"{_PREFIXED[f.name]}{getattr(self, f.name)}" if f.name in _PREFIXED else getattr(self, f.name)
            for f in fields(self)
        ]
        body = ".".join(parts)
        return f"{body}.{mod97_check(body)}"

    @classmethod
    def parse(cls, text: str) -> ComputeIdentifier:
        """Read and validate an identifier, or raise IdentifierError naming the bad field."""
        if not isinstance(text, str) or len(text) > 300:
            raise IdentifierError("a compute identifier is a string of at most 300 characters")
        parts = text.split(".")
        names = [f.name for f in fields(cls)]
        if parts[0] != VERSION:
            raise IdentifierError(f"compute identifier must start with {VERSION!r}, got {parts[0][:10]!r}")
        if len(parts) != len(names) + 2:
            raise IdentifierError(
                f"compute identifier has {len(parts)} fields, syntax 1 has {len(names) + 2}"
            )
        values: dict[str, Any] = {}
        for name, part in zip(names, parts[1:-1], strict=True):
            pattern, rule = _PATTERNS[name]
            if not re.fullmatch(pattern, part):
                raise IdentifierError(f"field {name!r} {rule}, got {part!r}")
            values[name] = int(part[1:]) if name in _PREFIXED else part
        identifier = cls(**values)
        body = text.rsplit(".", 1)[0]
        if parts[-1] != mod97_check(body):
            raise IdentifierError(f"check digits {parts[-1]!r} do not match (typo or altered identifier)")
        return identifier

    def as_dict(self) -> dict[str, Any]:
        """The parts as a plain dict (what catalogs and CLIs show)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def validate(text: str) -> str | None:
    """None if `text` is a valid identifier, else the reason it is not."""
    try:
        ComputeIdentifier.parse(text)
    except IdentifierError as exc:
        return str(exc)
    return None


REGISTRATION_TYPE = "cpnode.pool-registration"


@dataclass(frozen=True)
class RegistrationClaim:
    """What a signed registration code states: this node registered this pool under this identifier."""

    issuer: str
    pool: str
    identifier: str
    issued_ts: int
    expires_ts: int

    def document(self) -> dict[str, Any]:
        """The unsigned document the node signs (canonical-JSON-ready: strings and integers only)."""
        return {
            "type": REGISTRATION_TYPE,
            "issuer": self.issuer,
            "pool": self.pool,
            "identifier": self.identifier,
            "issued_ts": self.issued_ts,
            "expires_ts": self.expires_ts,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any], now_ts: int) -> RegistrationClaim:
        """Check a registration document's shape, identifier and validity at `now_ts` (not its signature)."""
        if document.get("type") != REGISTRATION_TYPE:
            raise IdentifierError(f"not a registration document (type must be {REGISTRATION_TYPE!r})")
        values: dict[str, Any] = {}
        for name, kind in (
            ("issuer", str),
            ("pool", str),
            ("identifier", str),
            ("issued_ts", int),
            ("expires_ts", int),
        ):
            value = document.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise IdentifierError(f"registration field {name!r} must be a {kind.__name__}")
            values[name] = value
        ComputeIdentifier.parse(values["identifier"])
        claim = cls(**values)
        if not claim.issued_ts <= now_ts < claim.expires_ts:
            raise IdentifierError("registration code is not valid now (expired or not yet valid)")
        return claim
