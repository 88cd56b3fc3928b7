"""Two replicas of ONE node for tests: the same config folder, key and database, two servers.

Replicas of a node sit behind one public URL, and peers sign requests for that URL whichever
replica receives them. Here replica A listens on a port picked beforehand and the node's
`http.public_url` is A's address; replica B listens on its own port and is reached directly, as a
load balancer would reach it. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from federation.service import FederationService
from node.config import load_settings
from node.ports import free_port
from node.roles import ALL_ROLES
from node.service import NodeServer, NodeStartError
from tests.support.federation import FED_TOML, offer_toml, service_of
from tests.support.nodes import make_node_dir

PORT_TRIES = 3  # starts of replica A, each on a newly chosen port after its port was taken


def replica_config(tmp_path: Path, db_url: str | None, name: str = "alpha") -> tuple[Path, int]:
    """A node folder whose public URL is http://127.0.0.1:PORT; return (node.toml, PORT)."""
    port = free_port()
    config = make_node_dir(tmp_path, name, db_url=db_url, extra_toml=FED_TOML + offer_toml(name))
    text = config.read_text(encoding="utf-8")
    public = f'[http]\npublic_url = "http://127.0.0.1:{port}"'
    config.write_text(text.replace("[http]", public, 1), encoding="utf-8")
    return config, port


def _moved(config: Path, port: int) -> int:
    """Point the node's public URL at another free port (its port was taken meanwhile); that port."""
    moved = free_port()
    text = config.read_text(encoding="utf-8")
    old, new = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{moved}"
    assert old in text
    config.write_text(text.replace(old, new, 1), encoding="utf-8")
    return moved


async def _replica_a(config: Path, port: int) -> NodeServer:
    """Replica A started on `port`, or on another if something else took `port` since it was
    chosen (another test's server may pick the same free port at the same moment)."""
    for attempt in range(PORT_TRIES):
        server = NodeServer(load_settings(config, environ={"CPNODE_HTTP_PORT": str(port)}), ALL_ROLES)
        try:
            await server.start()
        except NodeStartError as exc:
            if "already in use" not in str(exc) or attempt == PORT_TRIES - 1:
                raise
            port = _moved(config, port)
        else:
            return server
    raise AssertionError("unreachable: the last try returns or raises")


@dataclass
class Replicas:
    """Replica A (serving the public URL) and replica B of one node, with where to reach each."""

    public_url: str
    a: NodeServer
    b: NodeServer
    b_url: str

    @property
    def a_url(self) -> str:
        """Where replica A listens (the public URL)."""
        return self.public_url

    def services(self) -> tuple[FederationService, FederationService]:
        """The federation service of A and of B."""
        return service_of(self.a), service_of(self.b)

    def url(self, which: str) -> str:
        """Where replica `which` ("a" or "b") listens."""
        return self.a_url if which == "a" else self.b_url


@asynccontextmanager
async def replica_pair(tmp_path: Path, db_url: str | None = None) -> AsyncIterator[Replicas]:
    """Start replicas A and B of node `alpha` in this event loop; stop both afterwards."""
    config, port = replica_config(tmp_path, db_url)
    async with AsyncExitStack() as stack:
        a = await _replica_a(config, port)
        stack.push_async_callback(a.stop)
        b = NodeServer(load_settings(config, environ={"CPNODE_HTTP_PORT": "0"}), ALL_ROLES)
        await b.start()
        stack.push_async_callback(b.stop)
        assert b._runner is not None
        b_url = f"http://127.0.0.1:{b._runner.addresses[0][1]}"
        yield Replicas(a.url, a, b, b_url)
