"""Demo steps of connectors: a node reaching a local pool, two simulated clouds (one per API dialect)
and a simulated network; its offers carry metric scores and compute identifiers; a plugin process is
killed, its offers are withdrawn, and they come back when it is restarted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.demo.stage import DemoError, Stage
from node.launcher import NodeProcess
from node.money import format_rate, format_score
from node.resources import config_file

NODE = "chengdu"
IDENTITY = '{ industry = "I", enterprise = "91350100M000100Y43", datacenter = "%s" }'
SIMS: dict[str, str] = {}  # name → URL


def _launch(stage: Stage, argv: list[str]) -> subprocess.Popen[str]:
    """Start a simulator process and register its cleanup (`_announced` reads its URL)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # noqa: S603
    stage.cleanups.append(proc.kill)
    return proc


def _announced(stage: Stage, proc: subprocess.Popen[str], argv: list[str]) -> str:
    """The URL a started simulator announces on its first line."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening at " not in line:
        raise DemoError(f"{argv[0]} did not start: {line!r}")
    stage.say(line.strip())
    return line.strip().rsplit(" ", 1)[-1]


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.1)


def start_simulators(stage: Stage) -> None:
    """Start two cloud platform simulators (alpha and beta dialects) and a network controller simulator."""
    stage.title("Simulators: two clouds with different API dialects, one network controller (all SIMULATED)")
    scripts = Path(sys.executable).parent
    commands: dict[str, list[str]] = {}
    for dialect in ("alpha", "beta"):
        storage = stage.workdir / f"cloudsim-{dialect}"
        storage.mkdir(exist_ok=True)
        commands[dialect] = [
            str(scripts / "cpnode-cloudsim"),
            "--inventory",
            str(config_file("cloudsim", f"{dialect}.toml")),
            "--storage-dir",
            str(storage),
        ]
    commands["network"] = [
        str(scripts / "cpnode-netsim"),
        "--config",
        str(config_file("network", "default.toml")),
    ]
    # All three start side by side; their announcements are read in order.
    started = {name: _launch(stage, argv) for name, argv in commands.items()}
    for name, proc in started.items():
        SIMS[name] = _announced(stage, proc, commands[name])


def start_pool_node(stage: Stage) -> None:
    """A fourth platform's node whose offers come from its pools, not from its config."""
    stage.title(f"{NODE}: a node with a local pool and two simulated-cloud pools")
    pools = f"""
[federation]
allow_networks = ["127.0.0.0/8"]
sync_interval_s = 2

[connectors]
heartbeat_interval_s = 0.5
refresh_interval_s = 1

[[pools]]
name = "cd-local"
plugin = "local"
site = "chengdu"
options = {{ root = "pools/local", slots = 2, price_minor_per_slot_hour = 36000 }}
identity = {IDENTITY % "CD01"}

[[pools]]
name = "bj-alpha"
plugin = "cloudsim-alpha"
site = "beijing"
options = {{ url = "{SIMS["alpha"]}", access_key = "AK-alpha-demo", secret_key = "alpha-demo-secret" }}
identity = {IDENTITY % "BJ02"}

[[pools]]
name = "gy-beta"
plugin = "cloudsim-beta"
site = "guiyang"
options = {{ url = "{SIMS["beta"]}", access_key = "AK-beta-demo", secret_key = "beta-demo-secret" }}
identity = {IDENTITY % "GY01"}
"""
    node = stage.add_node(NODE, "Southwest Computing Hub", "Chengdu", extra_toml=pools)
    node.process = NodeProcess(node.config)
    stage.cleanups.append(node.process.kill)
    stage.say(f"{NODE:<10} listening on {node.process.start()}")


def _config(stage: Stage) -> str:
    return str(stage.nodes[NODE].config)


def _pools(stage: Stage) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        stage.cli(["pools", "list", "--json", "--config", _config(stage)], show=False)
    )
    return data


def show_offers(stage: Stage) -> None:
    """The node's offers, with measured or catalogue scores and compute identifiers."""
    stage.title(f"Offers of {NODE}'s pools (cpnode pools list): scores relative to one NVIDIA A100 = 1.00")
    _wait(
        "three pools online",
        lambda: (
            {p["name"] for p in _pools(stage)["pools"] if p["state"] == "online"}
            >= {"cd-local", "bj-alpha", "gy-beta"}
        ),
    )
    stage.cli(["plugins", "list", "--config", _config(stage)])
    for offer in _pools(stage)["offers"]:
        stage.say(
            f"{offer['offer_id']:<34} {offer['chips']:>2} × {offer['chip_model']:<20} free {offer['free']:>3}  "
            f"{format_rate(offer['price_minor_per_hour'], offer['currency'], 'unit-h'):>18}  "
            f"score {format_score(offer['score_composite_milli']):>6}"
        )
        stage.say(f"    {offer['identifier']}")
    code = stage.cli(["pools", "register", "gy-beta", "--config", _config(stage)])
    if "code" not in code:
        raise DemoError("no registration code was issued")


def network(stage: Stage) -> None:
    """Hot-add the network plugin; reserve a path with bandwidth, fail a link, see the path break."""
    stage.title("Network plugin (hot-added) and the simulated network controller")
    stage.cli(
        [
            "plugins",
            "add",
            "backbone",
            "netsim",
            "--option",
            f"url={SIMS['network']}",
            "--option",
            "token=netsim-demo-token",
            "--config",
            _config(stage),
        ]
    )
    request = json.dumps({"src": "chengdu", "dst": "guangzhou", "bandwidth_mbps": 3000}).encode()
    path = _netsim("POST", "/v1/paths", request)
    stage.say(
        f"path {path['id']}: {' → '.join(path['hops'])}, {path['bandwidth_mbps']} Mbit/s reserved, "
        f"{path['latency_us'] / 1000:.1f} ms"
    )
    _netsim("POST", f"/_sim/links/{path['links'][0]}/fail", b"")
    status = _netsim("GET", f"/v1/paths/{path['id']}", None)
    stage.say(f"link {path['links'][0]} failed (injected): path {path['id']} is {status['state']}")
    if status["state"] != "broken":
        raise DemoError("a failed link did not break the path")


def _netsim(method: str, path: str, body: bytes | None) -> Any:
    import urllib.request

    request = urllib.request.Request(SIMS["network"] + path, data=body, method=method)  # noqa: S310 — loopback
    request.add_header("Authorization", "Bearer netsim-demo-token")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def _start_plugin_process(stage: Stage) -> subprocess.Popen[bytes]:
    node = stage.nodes[NODE]
    token = node.config.parent / "keys" / "admin.token"
    argv = [
        sys.executable,
        "-m",
        "connectors.remote",
        "local",
        "cd-edge",
        "--node",
        node.url,
        "--admin-token-file",
        str(token),
        "--option",
        f"root={stage.workdir / 'edge-pool'}",
        "--option",
        "slots=1",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    stage.cleanups.append(proc.kill)
    return proc


def kill_and_restore_plugin(stage: Stage) -> None:
    """An out-of-process plugin is killed: 3 missed heartbeats withdraw its offers; restarted, they return."""
    stage.title("Hot-plug: an out-of-process plugin registers, is killed, and comes back")

    def edge(state: str, offers: bool) -> Callable[[], bool]:
        def check() -> bool:
            data = _pools(stage)
            pool = next((p for p in data["pools"] if p["name"] == "cd-edge"), None)
            has_offers = any(o["pool"] == "cd-edge" for o in data["offers"])
            return pool is not None and pool["state"] == state and has_offers == offers

        return check

    proc = _start_plugin_process(stage)
    _wait("cd-edge registered and offering", edge("online", True))
    stage.say(
        f"cd-edge (pid {proc.pid}) registered itself and heartbeats every 0.5 s; its offers are in the catalog"
    )
    proc.kill()
    proc.wait(10)
    stage.say(f"killed cd-edge (pid {proc.pid})")
    _wait("cd-edge offline", edge("offline", False))
    stage.cli(["plugins", "list", "--config", _config(stage)])
    stage.say("3 heartbeats missed: cd-edge is offline and its offers are withdrawn")
    proc = _start_plugin_process(stage)
    _wait("cd-edge back", edge("online", True))
    stage.say(f"restarted cd-edge (pid {proc.pid}): it registered again and its offers are back")
    stage.cli(["plugins", "remove", "cd-edge", "--config", _config(stage)])
    proc.kill()
