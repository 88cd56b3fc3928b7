"""Deployment of a node split by its availability plan: plan files in, Kubernetes manifests out."""

from node.deploy.k8s import K8sOptions, config_toml, manifests, secret_commands, service_name
from node.deploy.plan_file import DeployError, DeploySpec, ServiceSpec, parse_plan, read_plan

__all__ = [
    "DeployError",
    "DeploySpec",
    "K8sOptions",
    "ServiceSpec",
    "config_toml",
    "manifests",
    "parse_plan",
    "read_plan",
    "secret_commands",
    "service_name",
]
