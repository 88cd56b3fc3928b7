"""Config value types shared by the sections: `[node]`, `[[partners]]`, `[[issuers]]` and
`[[supervisors]]` check a node name, a peer URL and a public key by the same rules, and say so at
the value's path."""

from __future__ import annotations

from pathlib import Path

import pytest
from nacl.signing import SigningKey

from federation.keys import public_key_text
from node.config import ConfigError, Settings, parse_settings

NODE = {"name": "alpha", "operator": "Org", "region": "Beijing"}
KEY = public_key_text(SigningKey.generate().verify_key)


def _parse(data: dict[str, object]) -> Settings:
    return parse_settings({"node": NODE, **data}, Path("/srv/node"), {})


def _problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(data)
    return info.value.problems


def _peers(name: str, url: str, key: str) -> dict[str, object]:
    """The same peer as a partner, an issuer and a supervisor."""
    return {
        "partners": [{"name": name, "urls": [url], "key": key}],
        "issuers": [{"name": name, "key": key}],
        "supervisors": [{"name": name, "url": url, "key": key}],
    }


def test_a_good_peer_is_taken_alike_by_every_section() -> None:
    """A valid name, URL and key pass in each section; a trailing '/' of a URL is dropped in both."""
    settings = _parse(_peers("beta", "http://127.0.0.1:8701/", KEY))
    assert settings.partners[0].urls == ["http://127.0.0.1:8701"]
    assert settings.supervisors[0].url == "http://127.0.0.1:8701"
    assert settings.issuers[0].key == KEY


@pytest.mark.parametrize("bad", ["Beta", "-beta", "bêta", "b" * 64])
def test_a_bad_node_name_is_refused_in_every_section(bad: str) -> None:
    """The node's own name and every peer's name break the one rule with the one message."""
    problems = _problems({**_peers(bad, "http://127.0.0.1:8701", KEY), "node": {**NODE, "name": bad}})
    places = [problem.split(":", 1)[0] for problem in problems]
    assert places == [
        f"Error in configuration at '{path}'"
        for path in ("node.name", "partners.0.name", "issuers.0.name", "supervisors.0.name")
    ]
    messages = {problem.split(": ", 1)[1] for problem in problems}
    assert len(messages) == 1
    assert next(iter(messages)).startswith("node name must be")


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1", "http://user:pw@127.0.0.1", "http://127.0.0.1/?q=1", "127.0.0.1:8701"]
)
def test_a_bad_url_is_refused_alike_for_partners_and_supervisors(url: str) -> None:
    """A URL that is not http(s)://HOST[:PORT] without credentials, query or fragment is refused at
    its path, with the same message for a partner and a supervisor."""
    problems = _problems(_peers("beta", url, KEY))
    assert [problem.split(":", 1)[0] for problem in problems] == [
        "Error in configuration at 'partners.0.urls.0'",
        "Error in configuration at 'supervisors.0.url'",
    ]
    assert len({problem.split(": ", 1)[1] for problem in problems}) == 1


def test_a_key_id_is_named_as_such_in_every_section() -> None:
    """A key id where a public key belongs is named a key id at each peer's `key`."""
    key_id = "ed25519:" + "A" * 16
    problems = _problems(_peers("beta", "http://127.0.0.1:8701", key_id))
    assert len(problems) == 3
    for problem, section in zip(problems, ("partners", "issuers", "supervisors"), strict=True):
        assert problem.startswith(f"Error in configuration at '{section}.0.key'")
        assert "is a key id, not a public key" in problem
