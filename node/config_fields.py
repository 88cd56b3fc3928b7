"""What the config sections share: their base class, and the value types of a node's name, base URL
and public key.

Each is checked by the one rule federation applies to the same value on the wire (node names,
partner URLs, Ed25519 keys), its error turned into a ValueError so the config names the path
(``Error in configuration at 'supervisors.0.url': ...``). Sections annotate fields with them:
``name: NodeName``, ``urls: list[NodeUrl]``, ``key: PublicKey``.

URLs and keys load the crypto and HTTP-signature modules: they are imported by the validators, so
reading a config that pins no peer (and every `--help`) stays light.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from federation.errors import FederationError
from federation.names import check_node_name


class ConfigSection(BaseModel):
    """The base of every config section: an unknown key is an error, values are frozen, and
    defaults are validated like given values."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def node_name(value: str) -> str:
    """`value` if it is a node name (a lowercase DNS label), else ValueError."""
    try:
        return check_node_name(value)
    except FederationError as exc:
        raise ValueError(str(exc)) from None


def node_url(value: str) -> str:
    """`value` without a trailing '/' if it is a peer's base URL (http(s)://HOST[:PORT][/PATH], no
    credentials, query or fragment), else ValueError."""
    from federation.partners import split_url

    try:
        split_url(value)
    except FederationError as exc:
        raise ValueError(str(exc)) from None
    return value.rstrip("/")


def check_public_key(text: str) -> str:
    """`text` if it is an Ed25519 public key (`ed25519:` and 43 base64url characters), else
    ValueError; a key id given where the key belongs is named as such, with where to get the key."""
    from federation.keys import KEY_ID_CHARS, PREFIX, parse_public_key

    try:
        parse_public_key(text)
    except FederationError as exc:
        if text.startswith(PREFIX) and len(text) - len(PREFIX) == KEY_ID_CHARS:
            raise ValueError(
                f"{text} is a key id, not a public key: the public key is 'ed25519:' and 43 characters. "
                "Get it from the partner's operator (`cpnode keys show` on the partner prints it as "
                "'public key') or from the partner's key document at URL/fed/v1/keys"
            ) from None
        raise ValueError(str(exc)) from None
    return text


NodeName = Annotated[str, AfterValidator(node_name)]
NodeUrl = Annotated[str, AfterValidator(node_url)]
PublicKey = Annotated[str, AfterValidator(check_public_key)]
