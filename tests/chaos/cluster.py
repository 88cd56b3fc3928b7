"""The chaos cluster: three replicas of node `beijing` (the buyer) over one PostgreSQL schema behind a
loopback balancer, and its partner `shanghai` (the seller) over another schema, every database
connection going through one proxy that can cut them. All processes are real `cpnode run`s.

    consumers ─► balancer ─► beijing replica 0 │ 1 │ 2 ─┐
                                  │  signed trades      ├─► db proxy ─► PostgreSQL
                                  └──────► shanghai ────┘

The buyer's public URL is the balancer's, so the seller reaches "beijing" whichever replica is up.
Each replica and the seller listen on a port chosen up front and come back on it after a kill.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from node.config import load_settings
from node.identity import load_identity
from node.ports import free_port
from node.runfile import read_admin_token
from tests.chaos.proxy import TcpProxy
from tests.support.cli import cpnode_async
from tests.support.nodes import NodeProcess, make_node_dir, offer_entry

BUYER, SELLER = "beijing", "shanghai"
REPLICAS = 3
PRICE = 1_000  # per unit-hour, minor units
LOCAL_PRICE = 700
FEE_BP = 500
FREE_UNITS = 100_000
CREDIT_LIMIT = 10**12
SELLER_OFFER, LOCAL_OFFER = f"{SELLER}-gpu", f"{BUYER}-cpu"

COMMON_TOML = """
[federation]
allow_networks = ["127.0.0.0/8"]
sync_interval_s = 5
max_trades_in_flight = 64
trade_claim_ttl_s = 6

[scheduler]
lease_ttl_s = 5

[ledger]
sweep_every_s = 1

[trading]
platform_fee_bp = {fee_bp}
trade_timeout_s = 4
recover_every_s = 1

[logging]
level = "warning"
"""


def partner_toml(name: str, url: str, key: str, credit_limit: int) -> str:
    """One `[[partners]]` entry pinning `name`."""
    return f"""
[[partners]]
name = "{name}"
urls = ["{url}"]
key = "{key}"
credit_limit = {credit_limit}
"""


def with_schema(url: str, schema: str) -> str:
    """`url` with its search_path set to `schema`."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


def via_proxy(url: str, port: int) -> str:
    """`url` pointing at 127.0.0.1:`port` instead of its host and port."""
    return sa.make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@contextmanager
def schemas(postgres_url: str, count: int) -> Iterator[list[str]]:
    """`count` fresh PostgreSQL schemas, dropped afterwards."""
    names = [f"cpnode_chaos_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    admin = sa.create_engine(postgres_url)
    try:
        with admin.begin() as conn:
            for name in names:
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        yield names
    finally:
        with admin.begin() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@dataclass
class Member:
    """One node process of the cluster, the port it always listens on, and its kills."""

    name: str
    process: NodeProcess
    port: int
    kills: int = 0
    down: bool = False

    @property
    def url(self) -> str:
        """Where this process listens."""
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """The running cluster (see the module docstring)."""

    base: Path
    postgres_url: str
    db_proxy: TcpProxy = field(default_factory=TcpProxy)
    balancer: TcpProxy = field(default_factory=TcpProxy)
    replicas: list[Member] = field(default_factory=list)
    seller: Member | None = None
    buyer_config: Path = Path()
    seller_config: Path = Path()
    schemas: list[str] = field(default_factory=list)

    @property
    def buyer_url(self) -> str:
        """The buyer's public URL: the balancer."""
        return f"http://{self.balancer.url_host}"

    @property
    def members(self) -> list[Member]:
        """Every node process: the replicas, then the seller."""
        return [*self.replicas, *([self.seller] if self.seller else [])]

    def buyer_token(self) -> str:
        """The buyer's admin token."""
        return read_admin_token(load_settings(self.buyer_config, environ={}))

    def direct_url(self, schema: str) -> str:
        """A URL to `schema` that bypasses the proxy (for checks after the run)."""
        return with_schema(self.postgres_url, schema)

    async def start(self) -> None:
        """Start the proxies, write both nodes' configs, start every process, sync the catalog."""
        pg = sa.make_url(self.postgres_url)
        self.db_proxy.backends = [(pg.host or "127.0.0.1", pg.port or 5432)]
        await self.db_proxy.start()
        await self.balancer.start()
        db_url = via_proxy(self.postgres_url, self.db_proxy.port)
        buyer_db, seller_db = (with_schema(db_url, schema) for schema in self.schemas)
        seller_port = free_port()
        self.seller_config = make_node_dir(
            self.base,
            SELLER,
            db_url=seller_db,
            extra_toml=COMMON_TOML.format(fee_bp=FEE_BP)
            + offer_entry(SELLER_OFFER, SELLER, FREE_UNITS, PRICE, pool="gpu-a"),
        )
        self.buyer_config = make_node_dir(
            self.base,
            BUYER,
            db_url=buyer_db,
            extra_toml=COMMON_TOML.format(fee_bp=FEE_BP)
            + offer_entry(LOCAL_OFFER, BUYER, FREE_UNITS, LOCAL_PRICE, pool="cpu-a"),
        )
        text = self.buyer_config.read_text(encoding="utf-8")
        public = f'[http]\npublic_url = "{self.buyer_url}"'
        self.buyer_config.write_text(text.replace("[http]", public, 1), encoding="utf-8")
        keys = {
            config: load_identity(load_settings(config, environ={})).public_key
            for config in (self.buyer_config, self.seller_config)
        }
        seller_url = f"http://127.0.0.1:{seller_port}"
        with self.seller_config.open("a", encoding="utf-8") as handle:
            handle.write(partner_toml(BUYER, self.buyer_url, keys[self.buyer_config], CREDIT_LIMIT))
        with self.buyer_config.open("a", encoding="utf-8") as handle:
            handle.write(partner_toml(SELLER, seller_url, keys[self.seller_config], 0))
        self.seller = self._member(SELLER, self.seller_config, seller_port)
        self.replicas = [
            self._member(f"{BUYER}-{index}", self.buyer_config, free_port()) for index in range(REPLICAS)
        ]
        self.balancer.backends = [("127.0.0.1", member.port) for member in self.replicas]
        await asyncio.to_thread(self.seller.process.start)
        # One replica first: it applies the migrations the others then find done.
        await asyncio.to_thread(self.replicas[0].process.start)
        await asyncio.gather(*(asyncio.to_thread(m.process.start) for m in self.replicas[1:]))
        code, output = (await cpnode_async("catalog", "sync", "--json", config=self.buyer_config)).merged
        if code != 0:
            raise RuntimeError(f"catalog sync failed: {output}")

    def _member(self, name: str, config: Path, port: int) -> Member:
        process = NodeProcess(config, env={"CPNODE_HTTP_PORT": str(port)})
        process.log_path = config.parent / f"{name}.stderr.log"
        return Member(name, process, port)

    async def kill(self, member: Member) -> None:
        """SIGKILL one process (a crash)."""
        member.down = True
        member.kills += 1
        await asyncio.to_thread(member.process.kill)

    async def restart(self, member: Member) -> None:
        """Start a killed process again on its port."""
        await asyncio.to_thread(member.process.start)
        member.down = False

    async def stop(self) -> list[tuple[str, int]]:
        """Stop every process (SIGTERM) and both proxies; (name, exit code) of each process."""
        codes = []
        for member in self.members:
            if member.process.running:
                codes.append((member.name, await asyncio.to_thread(member.process.stop)))
        await self.balancer.close()
        await self.db_proxy.close()
        return codes

    def logs(self) -> dict[str, str]:
        """What each process wrote to stderr, by name."""
        return {member.name: member.process.log() for member in self.members}
