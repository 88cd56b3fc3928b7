"""Kubernetes manifests from an availability plan: pure data, no cluster access.

For each microservice of the plan: a Deployment with replicas = k (the plan's instances) running
`cpnode run --roles <its roles> --config /etc/cpnode/node.toml`, a Service on the node's HTTP
port, and a PodDisruptionBudget allowing one voluntary disruption at a time. Shared by all:
a ConfigMap holding node.toml. Two Secrets are referenced, never written: `<release>-database`
(key `url`: the PostgreSQL URL, given to the process as CPNODE_DATABASE_URL) and
`<release>-node-key` (files node.key, keyring.json, admin.token, mounted read-only).

Why the details: the model counts a microservice as up while any of its k instances is, assuming
independent failures, so instances are spread across hosts; rolling updates never take an
instance down before its replacement is ready; the root filesystem is read-only and the only
writable path is the data folder (an emptyDir), since all state lives in PostgreSQL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    node_toml: str  # content of the ConfigMap's node.toml
    namespace: str | None = None

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


def config_toml(raw: Mapping[str, Any]) -> str:
    """node.toml for the ConfigMap: the operator's config without `database.url`.

    The URL (which may hold a password) reaches the process only from the Secret, as
    CPNODE_DATABASE_URL, so it never lands in a ConfigMap.
    """
    data = {key: (dict(value) if isinstance(value, Mapping) else value) for key, value in raw.items()}
    database = data.get("database")
    if isinstance(database, dict):
        database.pop("url", None)
        if not database:
            data.pop("database")
    header = (
        "# node.toml for Kubernetes: database.url comes from a Secret; http.host and the key paths\n"
        "# are set by the Deployment's environment (CPNODE_HTTP_HOST, CPNODE_KEYS_*).\n"
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
    """The ClusterIP Service in front of one microservice's instances."""
    name = service_name(options.release, item)
    labels = _labels(options, "-".join(item.roles))
    selector = _selector(labels)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, options, labels),
        "spec": {
            "type": "ClusterIP",
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
    return files


def secret_commands(options: K8sOptions) -> list[str]:
    """The kubectl commands an operator runs once to create the two referenced Secrets."""
    ns = f" -n {options.namespace}" if options.namespace else ""
    return [
        f"kubectl{ns} create secret generic {options.database_secret} "
        "--from-literal=url='postgresql+psycopg://USER:PASSWORD@HOST:5432/DB'",
        f"kubectl{ns} create secret generic {options.key_secret} --from-file=node.key=keys/node.key "
        "--from-file=keyring.json=keys/keyring.json --from-file=admin.token=keys/admin.token",
    ]
