"""Kubernetes manifests from an availability plan: pure data, no cluster access.

For each microservice of the plan: a Deployment with replicas = k (the plan's instances) running
`cpnode run --roles <its roles> --config /etc/cpnode/node.toml`, a Service on the node's HTTP
port, and a PodDisruptionBudget allowing one voluntary disruption at a time. Shared by all:
a ConfigMap holding node.toml (production settings, see `config_toml`) and the way partners come in:
an Ingress (`/fed` and `/api` on the public host) or a LoadBalancer Service in front of the
microservice with the `federation` role. Two Secrets are referenced, never written: `<release>-database`
(key `url`: the PostgreSQL URL, given to the process as CPNODE_DATABASE_URL) and
`<release>-node-key` (files node.key, keyring.json, admin.token, mounted read-only).

Why the details: the model counts a microservice as up while any of its k instances is, assuming
independent failures, so instances are spread across hosts; rolling updates never take an
instance down before its replacement is ready; the root filesystem is read-only and the only
writable path is the data folder (an emptyDir), since all state lives in PostgreSQL.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import tomli_w

from node.deploy.plan_file import DeployError, DeploySpec, ServiceSpec

CONFIG_DIR = "/etc/cpnode"
CONFIG_PATH = f"{CONFIG_DIR}/node.toml"
DATA_DIR = f"{CONFIG_DIR}/data"  # Settings.data_dir for a config at CONFIG_PATH
SECRETS_DIR = "/var/run/secrets/cpnode"
RUN_AS_USER = 10001
_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class K8sOptions:
    """Deployment choices that do not come from the plan."""

    release: str  # prefix of every object name; usually the node's name
    image: str
    port: int
    node_toml: str  # content of the ConfigMap's node.toml (see production_toml)
    public_url: str  # where partners reach the node: http.public_url in the ConfigMap
    namespace: str | None = None
    expose: Literal["ingress", "loadbalancer"] = "ingress"
    ingress_host: str | None = None
    ingress_class: str | None = None
    tls_secret: str | None = None
    # Absolute paths of the node's key files on the operator's machine, for the Secret command.
    key_file: str = "keys/node.key"
    keyring_file: str = "keys/keyring.json"
    admin_token_file: str = "keys/admin.token"  # noqa: S105 - a path, not a secret

    @property
    def database_secret(self) -> str:
        """Name of the Secret holding the PostgreSQL URL under key `url`."""
        return f"{self.release}-database"

    @property
    def key_secret(self) -> str:
        """Name of the Secret holding node.key, keyring.json and admin.token."""
        return f"{self.release}-node-key"

    @property
    def config_map(self) -> str:
        """Name of the ConfigMap holding node.toml."""
        return f"{self.release}-config"


def check_options(options: K8sOptions) -> None:
    """Raise DeployError if names, port or image cannot be used."""
    if len(options.release) > 40 or not _LABEL_RE.fullmatch(options.release):
        raise DeployError(
            f"release name must be 1–40 characters of a–z, 0–9 and '-' (a DNS label), got {options.release!r}"
        )
    if options.namespace is not None and (
        len(options.namespace) > 63 or not _LABEL_RE.fullmatch(options.namespace)
    ):
        raise DeployError(f"namespace must be a DNS label, got {options.namespace!r}")
    if not 1 <= options.port <= 65535:
        raise DeployError(f"the node's HTTP port must be 1–65535 in Kubernetes, got {options.port}")
    if not options.image or any(ch.isspace() for ch in options.image):
        raise DeployError(f"image must be a non-empty reference without spaces, got {options.image!r}")
    parts = urlsplit(options.public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or _is_loopback_host(parts.hostname):
        raise DeployError(
            f"the public URL must be an http(s) URL partners can reach, not loopback, got {options.public_url!r}"
        )
    if options.expose == "ingress" and not options.ingress_host:
        raise DeployError("an Ingress needs a host (--ingress-host, or the host of --public-url)")


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_loopback_network(cidr: str) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return network.is_loopback or network.network_address.is_loopback


def config_toml(raw: Mapping[str, Any], port: int, public_url: str) -> str:
    """node.toml for the ConfigMap: the operator's config made fit for production.

    - no `database.url`: the URL (which may hold a password) reaches the process only from the
      Secret, as CPNODE_DATABASE_URL, so it never lands in a ConfigMap;
    - `http.port` is the container port and `http.public_url` the address partners use; `http.host`
      and the key paths come from the Deployment's environment;
    - loopback networks leave `federation.allow_networks` (they let a partner's URL point at the pod
      itself), and `federation.discovery` goes (it announces on 127.0.0.1 only: useless in a pod).
    """
    data = {key: (dict(value) if isinstance(value, Mapping) else value) for key, value in raw.items()}
    database = data.get("database")
    if isinstance(database, dict):
        database.pop("url", None)
        if not database:
            data.pop("database")
    http = data.setdefault("http", {})
    http.pop("host", None)
    http.update(port=port, public_url=public_url)
    keys = data.get("keys")
    if isinstance(keys, dict):
        for key in ("path", "admin_token_path"):
            keys.pop(key, None)
        if not keys:
            data.pop("keys")
    federation = data.get("federation")
    if isinstance(federation, dict):
        federation.pop("discovery", None)
        networks = [cidr for cidr in federation.get("allow_networks", []) if not _is_loopback_network(cidr)]
        if networks:
            federation["allow_networks"] = networks
        else:
            federation.pop("allow_networks", None)
        if not federation:
            data.pop("federation")
    header = (
        "# node.toml for Kubernetes: database.url comes from a Secret; http.host and the key paths\n"
        "# are set by the Deployment's environment (CPNODE_HTTP_HOST, CPNODE_KEYS_*). Loopback\n"
        "# networks and discovery, which only make sense on one machine, are left out.\n"
    )
    return header + tomli_w.dumps(data)


def service_name(release: str, service: ServiceSpec) -> str:
    """`<release>-<roles joined by '-'>`, shortened with a hash when over 63 characters."""
    name = f"{release}-{'-'.join(service.roles)}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def _labels(options: K8sOptions, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "cpnode",
        "app.kubernetes.io/instance": options.release,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "cpnode-deploy",
    }


def _selector(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that pick one microservice's pods (managed-by may change between versions)."""
    return {
        key: labels[key]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")
    }


def _metadata(name: str, options: K8sOptions, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels, **extra}
    if options.namespace:
        meta["namespace"] = options.namespace
    return meta


def _env(options: K8sOptions) -> list[dict[str, Any]]:
    return [
        {
            "name": "CPNODE_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": options.database_secret, "key": "url"}},
        },
        {"name": "CPNODE_HTTP_HOST", "value": "0.0.0.0"},  # noqa: S104 -- the pod's own interface, reached through the Service
        {"name": "CPNODE_KEYS_PATH", "value": f"{SECRETS_DIR}/node.key"},
        {"name": "CPNODE_KEYS_ADMIN_TOKEN_PATH", "value": f"{SECRETS_DIR}/admin.token"},
        {"name": "CPNODE_KEYS_ALLOW_GROUP_READ", "value": "true"},  # the Secret's 0440 with fsGroup
    ]


def _probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def deployment_manifest(item: ServiceSpec, spec: DeploySpec, options: K8sOptions) -> dict[str, Any]:
    """The Deployment of one microservice: replicas = k, running only its roles."""
    name = service_name(options.release, item)
    component = "-".join(item.roles)
    labels = _labels(options, component)
    selector = _selector(labels)
    annotations = {"cpnode/roles": ",".join(item.roles), "cpnode/module": item.module}
    if spec.availability is not None:
        annotations["cpnode/plan-availability"] = repr(spec.availability)
    container = {
        "name": "cpnode",
        "image": options.image,
        "command": ["cpnode"],
        "args": ["run", "--roles", ",".join(item.roles), "--config", CONFIG_PATH],
        "ports": [{"name": "http", "containerPort": options.port, "protocol": "TCP"}],
        "env": _env(options),
        "readinessProbe": _probe("/readyz", 5, 3),
        "livenessProbe": {**_probe("/healthz", 10, 3), "initialDelaySeconds": 10},
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_PATH, "subPath": "node.toml", "readOnly": True},
            {"name": "node-key", "mountPath": SECRETS_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, options, labels, annotations=annotations),
        "spec": {
            "replicas": spec.instances,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # Kubernetes would otherwise give the pod <SERVICE>_SERVICE_HOST variables for
                    # every Service; ones named cpnode-* would read as CPNODE_* config overrides.
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "fsGroup": RUN_AS_USER,
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }
                    ],
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": options.config_map}},
                        # 0440 with fsGroup: the non-root process can read, nobody can write.
                        {
                            "name": "node-key",
                            "secret": {"secretName": options.key_secret, "defaultMode": 0o440},
                        },
                        {"name": "data", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def service_manifest(item: ServiceSpec, options: K8sOptions) -> dict[str, Any]:
    """The Service in front of one microservice's instances: ClusterIP, or LoadBalancer for the
    microservice with the `federation` role when partners come in through a load balancer."""
    name = service_name(options.release, item)
    labels = _labels(options, "-".join(item.roles))
    selector = _selector(labels)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, options, labels),
        "spec": {
            "type": "LoadBalancer"
            if options.expose == "loadbalancer" and "federation" in item.roles
            else "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": options.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def disruption_budget_manifest(item: ServiceSpec, options: K8sOptions) -> dict[str, Any]:
    """A PodDisruptionBudget: voluntary evictions take at most one instance at a time."""
    name = service_name(options.release, item)
    labels = _labels(options, "-".join(item.roles))
    selector = _selector(labels)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(name, options, labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }


def config_map_manifest(options: K8sOptions) -> dict[str, Any]:
    """The ConfigMap with node.toml, shared by every microservice."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(options.config_map, options, _labels(options, "config")),
        "data": {"node.toml": options.node_toml},
    }


def ingress_manifest(spec: DeploySpec, options: K8sOptions) -> dict[str, Any]:
    """The Ingress partners and consumers come in through: `/fed` to the microservice with the
    `federation` role, `/api` to the one with `api`, on the public host."""
    paths = []
    for prefix, role in (("/fed", "federation"), ("/api", "api")):
        item = next((s for s in spec.services if role in s.roles), None)
        if item is not None:
            backend = {"service": {"name": service_name(options.release, item), "port": {"name": "http"}}}
            paths.append({"path": prefix, "pathType": "Prefix", "backend": backend})
    ingress_spec: dict[str, Any] = {"rules": [{"host": options.ingress_host, "http": {"paths": paths}}]}
    if options.ingress_class:
        ingress_spec["ingressClassName"] = options.ingress_class
    if options.tls_secret:
        ingress_spec["tls"] = [{"hosts": [options.ingress_host], "secretName": options.tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(options.release, options, _labels(options, "ingress")),
        "spec": ingress_spec,
    }


def manifests(spec: DeploySpec, options: K8sOptions) -> dict[str, list[dict[str, Any]]]:
    """Every manifest, grouped by output file name (one file per microservice plus the ConfigMap)."""
    check_options(options)
    files: dict[str, list[dict[str, Any]]] = {"configmap.yaml": [config_map_manifest(options)]}
    for item in spec.services:
        files[f"{service_name(options.release, item)}.yaml"] = [
            deployment_manifest(item, spec, options),
            service_manifest(item, options),
            disruption_budget_manifest(item, options),
        ]
    if options.expose == "ingress":
        files["ingress.yaml"] = [ingress_manifest(spec, options)]
    return files


def secret_commands(options: K8sOptions) -> list[str]:
    """The kubectl commands an operator runs once to create the two referenced Secrets."""
    ns = f" -n {options.namespace}" if options.namespace else ""
    return [
        f"kubectl{ns} create secret generic {options.database_secret} "
        "--from-literal=url='postgresql+psycopg://USER:PASSWORD@HOST:5432/DB'",
        f"kubectl{ns} create secret generic {options.key_secret} --from-file=node.key={options.key_file} "
        f"--from-file=keyring.json={options.keyring_file} --from-file=admin.token={options.admin_token_file}",
    ]
