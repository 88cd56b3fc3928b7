"""`cpnode run` as a real process: serve, stop cleanly on SIGTERM, and fail clearly on bad setups."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.support.cli import cpnode
from tests.support.nodes import NodeProcess, make_node_dir, start_all, stop_all

# The node reads CPNODE_* settings from the environment; these runs see only their config file.
WITHOUT_CPNODE = {k: v for k, v in os.environ.items() if not k.startswith("CPNODE_")}


def _get(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_run_serves_and_stops_cleanly_on_sigterm(tmp_path: Path, db_url: str) -> None:
    """A `cpnode run` subprocess answers its routes and exits 0 on SIGTERM."""
    node = NodeProcess(make_node_dir(tmp_path, "alpha", db_url=db_url))
    url = node.start()
    try:
        assert _get(f"{url}/healthz") == (200, {"status": "alive", "node": "alpha"})
        status, ready = _get(f"{url}/readyz")
        assert status == 200
        assert ready["status"] == "ready"
        status, keys = _get(f"{url}/fed/v1/keys")
        assert keys["issuer"] == "alpha"
    finally:
        code = node.stop()
    assert code == 0, node.log()
    assert node.stdout[-1] == "cpnode alpha stopped"


def test_json_logs_one_line_per_request(tmp_path: Path) -> None:
    """With --log-format json every request is one JSON log line with route, status and duration."""
    node = NodeProcess(make_node_dir(tmp_path, "alpha"), extra_args=["--log-format", "json"])
    url = node.start()
    try:
        _get(f"{url}/healthz")
    finally:
        node.stop()
    lines = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "cpnode.access"]
    assert len(access) == 1
    assert access[0]["route"] == "/healthz"
    assert access[0]["status"] == 200
    assert isinstance(access[0]["duration_ms"], float)


def test_no_access_lines_when_turned_off(tmp_path: Path) -> None:
    """With `logging.access = false` requests are served and logged by nobody; startup still is."""
    config = make_node_dir(tmp_path, "alpha", extra_toml="[logging]\naccess = false\n")
    node = NodeProcess(config, extra_args=["--log-format", "json"])
    url = node.start()
    try:
        for _ in range(3):
            assert _get(f"{url}/healthz")[0] == 200
    finally:
        node.stop()
    lines = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
    assert lines
    assert not [line for line in lines if line["logger"] == "cpnode.access"]


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """Starting on a port someone else holds exits 1 saying the port is in use."""
    config = make_node_dir(tmp_path, "alpha")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        text = config.read_text(encoding="utf-8").replace("port = 0", f"port = {port}")
        config.write_text(text, encoding="utf-8")
        result = cpnode("run", config=config, process=True, env=WITHOUT_CPNODE)
    assert result.code == 1
    assert "already in use" in result.err


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    """A database URL nobody answers exits 1 naming the database, before binding a port."""
    config = make_node_dir(tmp_path, "alpha", db_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = cpnode("run", config=config, process=True, env=WITHOUT_CPNODE)
    assert result.code == 1
    assert "database postgresql+psycopg://nobody@127.0.0.1:1/none is not reachable" in result.err


def test_group_writable_key_is_refused(tmp_path: Path) -> None:
    """A key file others can write is refused with the chmod to fix it."""
    config = make_node_dir(tmp_path, "alpha")
    key = config.parent / "keys" / "node.key"
    key.chmod(0o660)
    result = cpnode("run", config=config, process=True, env=WITHOUT_CPNODE)
    assert result.code == 1
    assert f"chmod 600 {key}" in result.err


def test_corrupt_key_is_a_clear_error(tmp_path: Path) -> None:
    """A key file that is not a PEM Ed25519 key is named in the error."""
    config = make_node_dir(tmp_path, "alpha")
    key = config.parent / "keys" / "node.key"
    key.write_bytes(b"not a key")
    result = cpnode("run", config=config, process=True, env=WITHOUT_CPNODE)
    assert result.code == 1
    assert str(key) in result.err
    assert "PEM" in result.err


def test_unknown_role_exits_2(tmp_path: Path) -> None:
    """--roles with an unknown role exits 2 and lists the known ones."""
    result = cpnode(
        "run",
        "--roles",
        "api,bogus",
        config=make_node_dir(tmp_path, "alpha"),
        process=True,
        env=WITHOUT_CPNODE,
    )
    assert result.code == 2
    assert "unknown role(s) bogus" in result.err


@pytest.mark.parametrize("count", [3])
def test_several_nodes_run_side_by_side(tmp_path: Path, count: int) -> None:
    """Several nodes, each with its own key and database, run at once on their own ports."""
    nodes = [NodeProcess(make_node_dir(tmp_path, f"node-{i}")) for i in range(count)]
    try:
        urls = start_all(nodes)
        assert len(set(urls)) == count
        key_ids = {_get(f"{url}/api/v1/node")[1]["key_id"] for url in urls}
        assert len(key_ids) == count
    finally:
        codes = stop_all(nodes)
    assert codes == [0] * count


def test_status_finds_the_running_node(tmp_path: Path) -> None:
    """`cpnode status` reports a node started on port 0 as running at its real URL, and stopped after."""
    config = make_node_dir(tmp_path, "alpha")
    node = NodeProcess(config)
    url = node.start()
    try:
        running = cpnode("status", "--json", config=config, process=True, env=WITHOUT_CPNODE).json()
    finally:
        node.stop()
    assert running["process"] == f"running at {url}"
    stopped = cpnode("status", "--json", config=config, process=True, env=WITHOUT_CPNODE).json()
    assert stopped["process"] == "not running"


def test_startup_objects_are_settled_out_of_the_collectors_sight() -> None:
    """What `cpnode run` does once it listens: a collection, then every object alive moved to the
    collector's permanent generation, so full collections under load skip them; the collector
    itself stays on for what the node allocates afterwards."""
    import gc

    from node.cli.run_cmd import settle_startup_objects

    alive: list[object] = [object()]  # a container: one the collector tracks
    try:
        gc.collect()
        assert any(found is alive for found in gc.get_objects(generation=2))
        settle_startup_objects()
        assert gc.get_freeze_count() > 0
        assert not any(found is alive for found in gc.get_objects(generation=2))
        assert gc.isenabled()
    finally:
        gc.unfreeze()
