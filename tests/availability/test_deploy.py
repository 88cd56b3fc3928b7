"""`cpnode deploy k8s`: valid manifests from the node's plan, and the split processes really serve."""

from __future__ import annotations

import json
import shutil
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from node.cli.main import main
from node.config import parse_settings
from node.launcher import NodeProcess
from node.roles import ROLES
from tests.support.availability import PAPER_TOML
from tests.support.nodes import make_node_dir

K8S_VERSION = "1.37"


def node_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    """Write the node's own plan (with `extra` options) and return its path."""
    path = tmp_path / "plan.json"
    assert main(["plan", "--node", "--out", str(path), "--json", *extra]) == 0
    capsys.readouterr()
    return path


def deploy(
    config: Path, plan: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> dict[str, list[dict[str, Any]]]:
    """Run `cpnode deploy k8s` (an Ingress on node.example.org unless `extra` says otherwise) and
    return the YAML documents of every file written."""
    args = [
        "deploy",
        "k8s",
        "--plan",
        str(plan),
        "--out",
        str(out),
        "--config",
        str(config),
        "--port",
        "8700",
        *(extra or ("--ingress-host", "node.example.org")),
    ]
    assert main(args) == 0
    capsys.readouterr()
    return {
        p.name: list(yaml.safe_load_all(p.read_text(encoding="utf-8"))) for p in sorted(out.glob("*.yaml"))
    }


def by_kind(files: dict[str, list[dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    """Every document of one kind."""
    return [doc for docs in files.values() for doc in docs if doc["kind"] == kind]


def test_manifests_validate_and_follow_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every manifest passes strict schema validation; one Deployment per microservice with replicas = k."""
    config = make_node_dir(tmp_path, "node-a", db_url="postgresql+psycopg://app:s3cret@db:5432/node")
    plan_path = node_plan(tmp_path, capsys, "--backups", "2", "--target", "0.9999")
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    files = deploy(config, plan_path, tmp_path / "k8s", capsys)
    for docs in files.values():
        for doc in docs:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    deployments = by_kind(files, "Deployment")
    assert len(deployments) == plan["microservices"]
    assert len(by_kind(files, "Service")) == len(by_kind(files, "PodDisruptionBudget")) == len(deployments)
    roles_seen: list[str] = []
    for item in deployments:
        spec = item["spec"]
        assert spec["replicas"] == plan["instances_per_service"] == 3
        container = spec["template"]["spec"]["containers"][0]
        args = container["args"]
        assert args[:2] == ["run", "--roles"]
        assert args[3:] == ["--config", "/etc/cpnode/node.toml"]
        roles_seen += args[2].split(",")
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["ports"][0] == {"name": "http", "containerPort": 8700, "protocol": "TCP"}
        env = {e["name"]: e for e in container["env"]}
        assert env["CPNODE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "node-a-database",
            "key": "url",
        }
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["node-key"]["readOnly"] is True
    assert sorted(roles_seen) == sorted(ROLES)
    node_toml = by_kind(files, "ConfigMap")[0]["data"]["node.toml"]
    assert "s3cret" not in node_toml
    assert "postgresql" not in node_toml
    assert not any(doc["kind"] == "Secret" for docs in files.values() for doc in docs)


def test_port_zero_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config on port 0 (any free port) cannot become a containerPort; the error says so."""
    config = make_node_dir(tmp_path, "node-z")
    plan = node_plan(tmp_path, capsys)
    assert (
        main(
            [
                "deploy",
                "k8s",
                "--plan",
                str(plan),
                "--out",
                str(tmp_path / "k8s"),
                "--config",
                str(config),
                "--ingress-host",
                "node.example.org",
            ]
        )
        == 2
    )
    assert "port must be 1–65535" in capsys.readouterr().err


def test_paper_plan_cannot_be_deployed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plan whose sub-modules are not node roles is refused with exit 2 and nothing is written."""
    config = make_node_dir(tmp_path, "node-b")
    plan = tmp_path / "paper.json"
    assert main(["plan", "--architecture", str(PAPER_TOML), "--out", str(plan), "--json"]) == 0
    capsys.readouterr()
    assert (
        main(["deploy", "k8s", "--plan", str(plan), "--out", str(tmp_path / "k8s"), "--config", str(config)])
        == 2
    )
    assert "not a node role" in capsys.readouterr().err
    assert not (tmp_path / "k8s").exists()


@pytest.mark.parametrize(
    ("services", "fragment"),
    [
        ([["api", "federation", "ledger"], ["connectors"]], "scheduler are in no microservice"),
        ([["api", "federation", "ledger"], ["connectors", "scheduler", "api"]], "more than one microservice"),
        ([], "non-empty list"),
    ],
)
def test_incomplete_plans_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], services: list[list[str]], fragment: str
) -> None:
    """Plans that drop or repeat a role would deploy a broken node, so they are refused."""
    config = make_node_dir(tmp_path, "node-c")
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps({"backups": 1, "modules": [{"name": "all", "services": services}]}), encoding="utf-8"
    )
    assert (
        main(["deploy", "k8s", "--plan", str(plan), "--out", str(tmp_path / "k8s"), "--config", str(config)])
        == 2
    )
    assert fragment in capsys.readouterr().err


def wait_http_ok(url: str, timeout_s: float = 20.0) -> None:
    """Poll `url` until it answers 200, or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered 200: {last}")


def test_split_deployment_serves_over_one_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str
) -> None:
    """Each Deployment's command, config and environment, run as real processes over one database, is ready."""
    source = make_node_dir(tmp_path, "node-d")
    files = deploy(source, node_plan(tmp_path, capsys), tmp_path / "k8s", capsys)
    # Lay out the pod's files as the kubelet would: ConfigMap's node.toml, the key Secret, an empty data dir.
    etc = tmp_path / "pod" / "etc"
    secrets = tmp_path / "pod" / "secrets"
    (etc / "data").mkdir(parents=True)
    secrets.mkdir(parents=True)
    # The public URL is the Ingress's; these processes stay on loopback, so it is left out here.
    pod_toml = by_kind(files, "ConfigMap")[0]["data"]["node.toml"]
    (etc / "node.toml").write_text(
        "\n".join(line for line in pod_toml.splitlines() if not line.startswith("public_url")),
        encoding="utf-8",
    )
    for name in ("node.key", "keyring.json", "admin.token"):
        if (source.parent / "keys" / name).exists():
            shutil.copy2(source.parent / "keys" / name, secrets / name)
    processes = []
    try:
        for item in by_kind(files, "Deployment"):
            container = item["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e.get("value", "") for e in container["env"]}
            env["CPNODE_DATABASE_URL"] = db_url  # what the Secret holds
            env["CPNODE_HTTP_HOST"] = "127.0.0.1"  # tests stay on loopback
            env["CPNODE_HTTP_PORT"] = "0"
            env["CPNODE_KEYS_PATH"] = str(secrets / "node.key")
            env["CPNODE_KEYS_ADMIN_TOKEN_PATH"] = str(secrets / "admin.token")
            settings = parse_settings(tomllib.loads((etc / "node.toml").read_text()), etc, env)
            assert settings.database_url == db_url
            assert settings.keys.allow_group_read  # the Secret's 0440 with fsGroup is declared expected
            roles = container["args"][2]
            process = NodeProcess(etc / "node.toml", roles=roles, env=env)
            processes.append(process)
            url = process.start()
            wait_http_ok(f"{url}/readyz")
            wait_http_ok(f"{url}/healthz")
    finally:
        for process in processes:
            process.stop()
    assert len(processes) == len(by_kind(files, "Deployment"))


DEV_TOML = """
[federation]
allow_networks = ["127.0.0.0/8", "::1/128", "10.20.0.0/16"]
discovery = true
"""


def test_production_settings_and_a_way_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """From a development config, the ConfigMap keeps no loopback network, discovery or dev port and
    sets http.public_url; an Ingress routes /fed and /api to the microservices with those roles; pods
    take no Service-link variables; the Secret command names the key files by absolute path."""
    config = make_node_dir(tmp_path, "node-p", extra_toml=DEV_TOML)
    plan = node_plan(tmp_path, capsys)
    out = tmp_path / "k8s"
    args = [
        "deploy",
        "k8s",
        "--plan",
        str(plan),
        "--out",
        str(out),
        "--config",
        str(config),
        "--port",
        "8443",
    ]
    assert main([*args, "--ingress-host", "node.example.org", "--tls-secret", "node-tls", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    files = {
        p.name: list(yaml.safe_load_all(p.read_text(encoding="utf-8"))) for p in sorted(out.glob("*.yaml"))
    }
    for docs in files.values():
        for doc in docs:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    pod_toml = tomllib.loads(by_kind(files, "ConfigMap")[0]["data"]["node.toml"])
    assert pod_toml["federation"] == {"allow_networks": ["10.20.0.0/16"]}
    assert pod_toml["http"] == {"port": 8443, "public_url": "https://node.example.org"}
    [ingress] = by_kind(files, "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": ["node.example.org"], "secretName": "node-tls"}]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "node.example.org"
    services = {s["metadata"]["name"]: s for s in by_kind(files, "Service")}
    deployments = {d["metadata"]["name"]: d for d in by_kind(files, "Deployment")}
    for path in rule["http"]["paths"]:
        target = path["backend"]["service"]["name"]
        roles = deployments[target]["spec"]["template"]["spec"]["containers"][0]["args"][2].split(",")
        assert {"/fed": "federation", "/api": "api"}[path["path"]] in roles
        assert services[target]["spec"]["type"] == "ClusterIP"
    assert {path["path"] for path in rule["http"]["paths"]} == {"/fed", "/api"}
    for item in deployments.values():
        assert item["spec"]["template"]["spec"]["enableServiceLinks"] is False
    key_command = printed["secret_commands"][1]
    for name in ("node.key", "keyring.json", "admin.token"):
        path = str((config.parent / "keys" / name).resolve())
        assert f"={path}" in key_command
        assert Path(path).exists()
    assert printed["public_url"] == "https://node.example.org"


def test_load_balancer_needs_a_public_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --expose loadbalancer the federation microservice's Service is a LoadBalancer and there is
    no Ingress; without --public-url (or any way in at all) the command exits 2 saying what to give."""
    config = make_node_dir(tmp_path, "node-l", extra_toml=DEV_TOML)
    plan = node_plan(tmp_path, capsys)
    base = ["deploy", "k8s", "--plan", str(plan), "--config", str(config), "--port", "8700"]
    assert main([*base, "--out", str(tmp_path / "none")]) == 2
    assert "--public-url" in capsys.readouterr().err
    assert (
        main([*base, "--out", str(tmp_path / "lb0"), "--expose", "loadbalancer", "--ingress-host", "x.org"])
        == 2
    )
    capsys.readouterr()
    files = deploy(
        config,
        plan,
        tmp_path / "lb",
        capsys,
        "--expose",
        "loadbalancer",
        "--public-url",
        "https://203.0.113.7:8700",
    )
    assert not by_kind(files, "Ingress")
    types = {s["metadata"]["name"]: s["spec"]["type"] for s in by_kind(files, "Service")}
    assert sorted(types.values()).count("LoadBalancer") == 1
    [balanced] = [name for name, kind in types.items() if kind == "LoadBalancer"]
    assert "federation" in balanced
    assert 'public_url = "https://203.0.113.7:8700"' in by_kind(files, "ConfigMap")[0]["data"]["node.toml"]
