"""Demo steps of traffic steering (业务调度): alice's inference service on Beijing has two replicas,
one on a pool of Beijing's own and one on Chengdu's pool (a partner's, through the market). Users
at Beijing are steered to the Beijing replica and users at Chengdu to Chengdu's; then the Beijing
replica is killed and its traffic moves to Chengdu's with no failed request.

The replica is configs/tasks/echo-replica.toml as shipped, except that its input's URL points at
the file server of the tasks step (the shipped one names port 8765)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from node.demo.connectors import NODE as POOL_NODE
from node.demo.stage import DemoError, Stage
from node.demo.tasks import BUYER, serve_inputs
from node.resources import config_file

SERVICE = "echo"
STATE: dict[str, Any] = {}


def _config(stage: Stage) -> str:
    return str(stage.nodes[BUYER].config)


def _json(stage: Stage, *args: str, show: bool = False) -> Any:
    return json.loads(stage.cli([*args, "--json", "--config", _config(stage)], show=show, echo=True))


def configure(stage: Stage) -> None:
    """Beijing's users are at site beijing; its partner Chengdu's replicas at chengdu, 18 ms away."""
    with stage.nodes[BUYER].config.open("a", encoding="utf-8") as handle:
        handle.write(
            '\n[services]\nsite = "beijing"\nhealth_interval_s = 0.5\n'
            f'partner_sites = {{ {POOL_NODE} = "chengdu" }}\nlatency_ms = {{ "beijing/chengdu" = 18.0 }}\n'
            '\n[migration]\nsites = { bj-local = "beijing" }\n'
        )


def _steer(stage: Stage, site: str, path: str = "/who") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{stage.nodes[BUYER].url}/svc/{SERVICE}{path}", headers={"X-Cpnode-Site": site}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def _healthy(stage: Stage, count: int, timeout_s: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        service = _json(stage, "services", "show", SERVICE)
        healthy = [r for r in service["replica_list"] if r.get("healthy")]
        if len(healthy) >= count:
            return healthy
        if time.monotonic() > deadline:
            raise DemoError(f"service {SERVICE} has {len(healthy)} healthy replicas, not {count}: {service}")
        time.sleep(0.5)


def create_service(stage: Stage) -> None:
    """Beijing hosts a small pool; alice creates a service of two replicas: the cheaper Beijing slot
    takes one, the market places the other on Chengdu's pool."""
    stage.title(f"alice's inference service on {BUYER}: two replicas, on {BUYER}'s pool and {POOL_NODE}'s")
    stage.cli(
        ["plugins", "add", "bj-local", "local", "--option", "root=pools/bj-local", "--option", "slots=1",
         "--option", "price_minor_per_slot_hour=3600", "--config", _config(stage)]
    )  # fmt: skip
    url = serve_inputs(stage)
    shipped = config_file("tasks", "echo-replica.toml")
    text = re.sub(r'url = "http://127\.0\.0\.1:8765/', f'url = "{url}/', shipped.read_text(encoding="utf-8"))
    spec = stage.workdir / "echo-replica.toml"
    spec.write_text(text, encoding="utf-8")
    stage.cli(
        ["services", "create", SERVICE, "--spec", str(spec), "--replicas", "2", "--consumer", "alice",
         "--config", _config(stage)]
    )  # fmt: skip
    replicas = _healthy(stage, 2)
    by_site = {r["site"]: r for r in replicas}
    if set(by_site) != {"beijing", "chengdu"}:
        raise DemoError(f"the replicas are not on both nodes: {replicas}")
    STATE["by_site"] = {site: r["replica"] for site, r in by_site.items()}
    stage.cli(["services", "show", SERVICE, "--config", _config(stage)])


def steer_traffic(stage: Stage) -> None:
    """Users at each site reach the replica nearest them; the resolve API says why."""
    stage.title("Users' requests are steered by latency from their site (GET /svc/echo/...)")
    by_site = STATE["by_site"]
    for site in ("beijing", "chengdu"):
        seen = Counter(_steer(stage, site)[1].get("replica") for _ in range(20))
        stage.say(f"20 requests from users at {site:<8} → {dict(seen)}")
        if seen != Counter({by_site[site]: 20}):
            raise DemoError(f"users at {site} were not steered to the replica at {site}: {seen}")
    stage.cli(["services", "resolve", SERVICE, "--site", "chengdu", "--config", _config(stage)])


def kill_replica(stage: Stage) -> None:
    """The Beijing replica's process is killed under traffic: requests move to Chengdu's replica at
    once (failover), none fails, and the resolve API marks it unhealthy."""
    stage.title("The Beijing replica is killed under traffic: its users move to Chengdu's replica")
    by_site = STATE["by_site"]
    status, answer = _steer(stage, "beijing")
    if status != 200 or answer.get("replica") != by_site["beijing"]:
        raise DemoError(f"the Beijing replica did not answer: {status} {answer}")
    os.kill(int(answer["pid"]), signal.SIGKILL)
    stage.say(f"killed replica {by_site['beijing']} (pid {answer['pid']})")
    results = [_steer(stage, "beijing") for _ in range(30)]
    failed = [status for status, _ in results if status != 200]
    seen = Counter(body.get("replica") for status, body in results if status == 200)
    stage.say(f"30 requests from users at beijing after the kill → {dict(seen)}, {len(failed)} failed")
    if failed or set(seen) != {by_site["chengdu"]}:
        raise DemoError(f"traffic did not fail over cleanly: {len(failed)} failed, {seen}")
    ranked = _json(stage, "services", "resolve", SERVICE, "--site", "beijing")["replicas"]
    killed = next((r for r in ranked if r["replica"] == by_site["beijing"]), None)
    if killed is not None:
        stage.say(f"resolve: {killed['replica']} — {'; '.join(killed['reasons'])}")
    stage.cli(["services", "delete", SERVICE, "--config", _config(stage)])
