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
from node.service import NodeServer
from tests.support.federation import FED_TOML, offer_toml, service_of
from tests.support.nodes import make_node_dir


def replica_config(tmp_path: Path, db_url: str | None, name: str = "alpha") -> tuple[Path, int]:
    """A node folder whose public URL is http://127.0.0.1:PORT; return (node.toml, PORT)."""
    port = free_port()
    config = make_node_dir(tmp_path, name, db_url=db_url, extra_toml=FED_TOML + offer_toml(name))
    text = config.read_text(encoding="utf-8")
    public = f'[http]\npublic_url = "http://127.0.0.1:{port}"'
    config.write_text(text.replace("[http]", public, 1), encoding="utf-8")
    return config, port


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
        servers = []
        for replica_port in (port, 0):
            server = NodeServer(
                load_settings(config, environ={"CPNODE_HTTP_PORT": str(replica_port)}), ALL_ROLES
            )
            await server.start()
            stack.push_async_callback(server.stop)
            servers.append(server)
        a, b = servers
        assert b._runner is not None
        b_url = f"http://127.0.0.1:{b._runner.addresses[0][1]}"
        yield Replicas(a.url, a, b, b_url)
