"""Demo steps of the node foundation: three nodes initialised, started, inspected, stopped."""

from __future__ import annotations

from node.demo.stage import DemoError, Stage
from node.launcher import NodeProcess, start_all, stop_all
from node.times import format_ts

NODES: tuple[tuple[str, str, str], ...] = (
    ("beijing", "North China Computing Platform", "Beijing"),
    ("shanghai", "East China Intelligent Computing", "Shanghai"),
    ("guangzhou", "South China Compute Exchange", "Guangzhou"),
)


def create_nodes(stage: Stage) -> None:
    """`cpnode init` three nodes, each with its own key, config and SQLite database."""
    stage.title("Three platforms each initialise a node")
    for name, operator, region in NODES:
        stage.add_node(name, operator, region)


def start_nodes(stage: Stage) -> None:
    """Start every node as a real `cpnode run` process on loopback."""
    stage.title("Start the nodes (cpnode run, loopback, any free port)")
    nodes = list(stage.nodes.values())
    for node in nodes:
        node.process = NodeProcess(node.config)
        stage.cleanups.append(node.process.kill)
    # Side by side: each node imports, migrates its database and binds while the others do.
    urls = start_all([node.process for node in nodes if node.process is not None])
    for node, url in zip(nodes, urls, strict=True):
        stage.say(f"{node.name:<10} listening on {url}")


def show_status(stage: Stage) -> None:
    """Print `cpnode status` of each node and check each one is ready."""
    for node in stage.nodes.values():
        stage.title(f"Status of {node.name}")
        stage.cli(["status", "--config", str(node.config)])
        ready = stage.get_json(node.name, "/readyz")
        if ready.get("status") != "ready":
            raise DemoError(f"{node.name} is not ready: {ready}")


def show_key_documents(stage: Stage) -> None:
    """Fetch each node's self-signed key document over HTTP."""
    stage.title("Key documents (GET /fed/v1/keys, self-signed)")
    for node in stage.nodes.values():
        document = stage.get_json(node.name, "/fed/v1/keys")
        for key in document["keys"]:
            stage.say(
                f"{document['issuer']:<10} {key['status']:<7} {key['kid']}  valid from {format_ts(key['valid_from_ts'])}"
            )


def stop_nodes(stage: Stage) -> None:
    """Stop every node with SIGTERM and check each exits cleanly."""
    stage.title("Stop the nodes (SIGTERM, clean shutdown)")
    running = [node for node in stage.nodes.values() if node.process is not None and node.process.running]
    # All at once: each finishes its requests and jobs while the others do.
    codes = stop_all([node.process for node in running if node.process is not None])
    for node, code in zip(running, codes, strict=True):
        stage.say(f"{node.name:<10} stopped, exit code {code}")
        if code != 0 and node.process is not None:
            raise DemoError(f"{node.name} exited with {code}:\n{node.process.log()}")
