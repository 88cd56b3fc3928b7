"""Configuration: typed sections, errors that name their path, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.cli.main import main as cpnode
from node.config import ConfigError, load_settings, parse_settings

NODE = {"name": "alpha", "operator": "Org", "region": "Beijing"}


def _problems(data: dict[str, object], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(data, Path("/srv/node"), environ or {})
    return info.value.problems


def test_port_out_of_range_names_the_path() -> None:
    """A port of 70000 is reported exactly at 'http.port' with the allowed range."""
    problems = _problems({"node": NODE, "http": {"port": 70000}})
    assert problems == ["Error in configuration at 'http.port': must be 1–65535, got 70000"]


def test_unknown_keys_are_named() -> None:
    """Unknown keys, in a section or at top level, are errors that name them."""
    problems = _problems({"node": NODE, "http": {"prot": 1}, "extra": {}})
    assert "Error in configuration at 'http.prot': unknown key" in problems
    assert "Error in configuration at 'extra': unknown key" in problems


def test_missing_required_value() -> None:
    """A missing node name is reported as required."""
    problems = _problems({"node": {"operator": "o", "region": "r"}})
    assert problems == ["Error in configuration at 'node.name': required but missing"]


def test_bad_node_name_rejected() -> None:
    """Node names are lowercase DNS labels; non-ASCII and uppercase are refused."""
    for bad in ("Alpha", "ålpha", "-a", "a" * 64, "a\x00"):
        assert _problems({"node": {**NODE, "name": bad}})[0].startswith(
            "Error in configuration at 'node.name'"
        )


def test_env_override_applies_and_is_named_in_errors() -> None:
    """CPNODE_HTTP_PORT overrides [http] port; a bad override names the variable."""
    settings = parse_settings({"node": NODE}, Path("/srv/node"), {"CPNODE_HTTP_PORT": "9100"})
    assert settings.http.port == 9100
    problems = _problems({"node": NODE}, {"CPNODE_DATABASE_POOL_SIZE": "many"})
    assert problems[0].startswith(
        "Error in configuration at 'database.pool_size' (from CPNODE_DATABASE_POOL_SIZE)"
    )


def test_unrelated_env_is_ignored() -> None:
    """Variables for no known section (CPNODE_TEST_..., CPNODE_CONFIG) are not config overrides."""
    settings = parse_settings(
        {"node": NODE}, Path("/srv"), {"CPNODE_TEST_POSTGRES_URL": "x", "CPNODE_CONFIG": "y"}
    )
    assert settings.node.name == "alpha"


def test_relative_paths_resolve_against_config_dir() -> None:
    """The SQLite file and key path are resolved relative to the folder holding node.toml."""
    settings = parse_settings({"node": NODE}, Path("/srv/node"), {})
    assert settings.database_url == "sqlite:////srv/node/data/node.db"
    assert settings.path(settings.keys.path) == Path("/srv/node/keys/node.key")


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    """A missing file and invalid TOML each give one clear message."""
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\nname=", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)


def test_cli_exits_2_on_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`cpnode status` with a bad value exits 2 and prints the path of the error."""
    config = tmp_path / "node.toml"
    config.write_text('[node]\nname="a"\noperator="o"\nregion="r"\n[http]\nport=70000\n', encoding="utf-8")
    assert cpnode(["status", "--config", str(config)]) == 2
    assert "Error in configuration at 'http.port': must be 1–65535, got 70000" in capsys.readouterr().err


def test_cli_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Running against a config that does not exist exits 2 and says how to make one."""
    assert cpnode(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cpnode init" in capsys.readouterr().err


SERVICE_LINKS = {
    # What Kubernetes injects for Services named cpnode-ledger, cpnode-federation-scheduler and
    # cpnode-http in the same namespace (enableServiceLinks defaults to true).
    "CPNODE_LEDGER_SERVICE_HOST": "10.96.0.12",
    "CPNODE_LEDGER_SERVICE_PORT": "8700",
    "CPNODE_LEDGER_SERVICE_PORT_HTTP": "8700",
    "CPNODE_LEDGER_PORT": "tcp://10.96.0.12:8700",
    "CPNODE_LEDGER_PORT_8700_TCP": "tcp://10.96.0.12:8700",
    "CPNODE_LEDGER_PORT_8700_TCP_PROTO": "tcp",
    "CPNODE_LEDGER_PORT_8700_TCP_PORT": "8700",
    "CPNODE_LEDGER_PORT_8700_TCP_ADDR": "10.96.0.12",
    "CPNODE_FEDERATION_SCHEDULER_SERVICE_HOST": "10.96.0.13",
    "CPNODE_FEDERATION_SCHEDULER_PORT": "tcp://10.96.0.13:8700",
    "CPNODE_FEDERATION_SCHEDULER_PORT_8700_UDP_ADDR": "10.96.0.13",
    "CPNODE_HTTP_SERVICE_HOST": "10.96.0.14",
    "CPNODE_HTTP_PORT": "tcp://10.96.0.14:8700",
    "CPNODE_HTTP_PORT_8700_TCP": "tcp://10.96.0.14:8700",
}


def test_kubernetes_service_links_are_not_config() -> None:
    """Service-link variables (CPNODE_LEDGER_SERVICE_HOST, CPNODE_HTTP_PORT=tcp://...) are ignored,
    not errors or values, while real overrides next to them still apply."""
    environ = {**SERVICE_LINKS, "CPNODE_HTTP_HOST": "0.0.0.0", "CPNODE_DATABASE_POOL_SIZE": "7"}
    settings = parse_settings({"node": NODE, "http": {"port": 8701}}, Path("/srv"), environ)
    assert settings.http.port == 8701
    assert settings.http.host == "0.0.0.0"
    assert settings.database.pool_size == 7


def test_unknown_override_is_still_an_error() -> None:
    """A CPNODE_<SECTION>_<KEY> variable naming no key of ours, and not shaped like a service link,
    is an error naming the variable; so is a bad value for a real port."""
    problems = _problems({"node": NODE}, {**SERVICE_LINKS, "CPNODE_HTTP_BOGUS": "1"})
    assert problems == ["Error in configuration at 'http.bogus' (from CPNODE_HTTP_BOGUS): unknown key"]
    problems = _problems({"node": NODE}, {"CPNODE_HTTP_PORT": "many"})
    assert problems[0].startswith("Error in configuration at 'http.port' (from CPNODE_HTTP_PORT)")
