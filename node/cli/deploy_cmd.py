"""`cpnode deploy k8s --plan PLAN --out DIR`: Kubernetes manifests for a node split by its plan."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from node import __version__
from node.cli.commands import add_command
from node.cli.common import CliError, add_config_argument, add_json_argument, print_json, settings_from_args
from node.deploy import DeployError, K8sOptions, config_toml, manifests, read_plan, secret_commands


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated label maps in full: anchors and aliases confuse people reading manifests."""

    def ignore_aliases(self, data: object) -> bool:  # noqa: ARG002 (PyYAML's signature)
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # node.toml inside the ConfigMap reads best as a literal block.
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_PlainDumper.add_representer(str, _text)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode deploy k8s`."""
    parser = add_command(commands, "deploy")
    targets = parser.add_subparsers(title="targets", metavar="TARGET")
    k8s = targets.add_parser(
        "k8s",
        help="Kubernetes manifests",
        description="Write a Deployment (replicas = instances per microservice), a Service and a "
        "PodDisruptionBudget per microservice of PLAN, a ConfigMap with node.toml in production form "
        "(no loopback networks, the container port, http.public_url) and the way partners come in "
        "(an Ingress, or a LoadBalancer Service). The database URL and the node key come from Secrets "
        "that these manifests reference but never contain.",
    )
    k8s.add_argument(
        "--plan", type=Path, required=True, metavar="PLAN", help="plan JSON from `cpnode plan --node --out`"
    )
    k8s.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the manifests")
    add_config_argument(k8s)
    k8s.add_argument(
        "--image", default=f"cpnode:{__version__}", help="container image (default cpnode:VERSION)"
    )
    k8s.add_argument("--name", default=None, help="prefix of object names (default: the node's name)")
    k8s.add_argument(
        "--port", type=int, default=None, help="container port (default: http.port of the config)"
    )
    k8s.add_argument("--namespace", default=None, help="namespace of every object (default: none set)")
    k8s.add_argument(
        "--expose",
        choices=("ingress", "loadbalancer"),
        default="ingress",
        help="how partners reach the node: an Ingress (default) routing /fed and /api, or a "
        "LoadBalancer Service in front of the federation microservice (needs --public-url)",
    )
    k8s.add_argument(
        "--ingress-host",
        default=None,
        metavar="HOST",
        help="the Ingress's host (default: --public-url's host)",
    )
    k8s.add_argument("--ingress-class", default=None, metavar="CLASS", help="ingressClassName of the Ingress")
    k8s.add_argument(
        "--tls-secret",
        default=None,
        metavar="SECRET",
        help="TLS Secret for the Ingress host (the public URL is then https://HOST)",
    )
    k8s.add_argument(
        "--public-url",
        default=None,
        metavar="URL",
        help="the base URL partners use, written as http.public_url (default with an Ingress: "
        "http(s)://HOST; required with a load balancer, whose address only the operator knows)",
    )
    add_json_argument(k8s)
    k8s.set_defaults(handler=run_k8s)
    parser.set_defaults(handler=lambda _args: _missing_target(parser))


def _missing_target(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_k8s(args: argparse.Namespace) -> int:
    """Handler of `cpnode deploy k8s`."""
    settings = settings_from_args(args)
    raw = tomllib.loads(args.config.read_text(encoding="utf-8"))  # already validated just above
    try:
        spec = read_plan(args.plan)
    except DeployError as exc:
        raise CliError(str(exc), exit_code=2) from None
    host = args.ingress_host or (urlsplit(args.public_url).hostname if args.public_url else None)
    public_url = args.public_url
    if public_url is None:
        if args.expose == "loadbalancer" or host is None:
            raise CliError(
                "say where partners reach the node: --public-url URL (with --expose loadbalancer), or "
                "--ingress-host HOST",
                exit_code=2,
            )
        public_url = f"{'https' if args.tls_secret else 'http'}://{host}"
    port = args.port if args.port is not None else settings.http.port
    from node.identity import keyring_path  # the identity layer is loaded to deploy, not for --help

    key_path = settings.path(settings.keys.path).resolve()
    options = K8sOptions(
        release=args.name or settings.node.name,
        image=args.image,
        port=port,
        node_toml=config_toml(raw, port, public_url.rstrip("/")),
        public_url=public_url.rstrip("/"),
        namespace=args.namespace,
        expose=args.expose,
        ingress_host=host if args.expose == "ingress" else None,
        ingress_class=args.ingress_class,
        tls_secret=args.tls_secret,
        key_file=str(key_path),
        keyring_file=str(keyring_path(key_path)),
        admin_token_file=str(settings.path(settings.keys.admin_token_path).resolve()),
    )
    try:
        files = manifests(spec, options)
    except DeployError as exc:
        raise CliError(str(exc), exit_code=2) from None
    out: Path = args.out
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, docs in files.items():
            path = out / name
            path.write_text(yaml.dump_all(docs, Dumper=_PlainDumper, sort_keys=False), encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise CliError(f"cannot write to {out}: {exc.strerror}") from None
    commands = secret_commands(options)
    if args.json:
        print_json(
            {
                "files": [str(p) for p in written],
                "microservices": [
                    {"roles": list(s.roles), "replicas": spec.instances} for s in spec.services
                ],
                "secrets": [options.database_secret, options.key_secret],
                "public_url": options.public_url,
                "expose": options.expose,
                "secret_commands": commands,
            }
        )
        return 0
    for path in written:
        print(f"wrote {path}")
    print(f"{len(spec.services)} microservices, {spec.instances} replicas each")
    print("Create the referenced Secrets once (values are never written to the manifests):")
    for command in commands:
        print(f"  {command}")
    print(f"Then: kubectl apply -f {out}")
    return 0
