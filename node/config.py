"""Typed node configuration: one TOML file, one settings class per section, env overrides.

Rules:
- Unknown keys are errors that name them; nothing is silently ignored.
- `CPNODE_<SECTION>_<KEY>` overrides `[section] key` (values parsed as TOML scalars, else strings).
  Kubernetes service links of Services named cpnode-* (`CPNODE_LEDGER_SERVICE_HOST`,
  `CPNODE_HTTP_PORT=tcp://10.0.0.1:8700`, ...) are not overrides and are ignored.
- Relative paths are resolved against the directory that holds the config file.
- Every error names its path: ``Error in configuration at 'http.port': must be 1–65535, got 70000``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from node.accounts.settings import AccountsSection
from node.config_fields import ConfigSection, NodeName
from node.console.settings import ConsoleSection
from node.migration.settings import MigrationSection
from node.network.settings import NetworkSection
from node.peering.settings import FederationSection, IssuerSection, OfferSection, PartnerSection
from node.pools.settings import ConnectorsSection, PoolList
from node.runfile import DEFAULT_CONFIG_NAME as DEFAULT_CONFIG_NAME  # re-exported: where `cpnode init` writes
from node.services.settings import ServicesSection
from node.settlement.settings import LedgerSection
from node.supervision.settings import SupervisionSection, SupervisorSection
from node.tasks.settings import TasksSection
from node.telemetry.settings import MetricsSection
from node.trading.settings import TradingSection

ENV_PREFIX = "CPNODE_"
# The variables Kubernetes derives from a Service's name (docs: "Environment variables" under
# Services): NAME_SERVICE_HOST, NAME_SERVICE_PORT[_PORTNAME], NAME_PORT_N_PROTO[_PROTO|_PORT|_ADDR]
# are recognised by name alone; NAME_PORT only when its value is an address like tcp://IP:PORT.
SERVICE_LINK_KEY_RE = re.compile(
    r"(.*_)?(service_host|service_port(_[a-z0-9_]+)?|port_[0-9]+_(tcp|udp|sctp)(_(proto|port|addr))?)"
)
SERVICE_LINK_PORT_RE = re.compile(r"(.*_)?port")
SERVICE_LINK_VALUE_RE = re.compile(r"(tcp|udp|sctp)://[^\s/]+:[0-9]+")


class ConfigError(ValueError):
    """The configuration cannot be used; `problems` holds one line per bad value."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class NodeSection(ConfigSection):
    """`[node]`: who this node is."""

    name: NodeName
    operator: str = Field(min_length=1, max_length=200)
    region: str = Field(min_length=1, max_length=100)


class HttpSection(ConfigSection):
    """`[http]`: the listening socket and request limits."""

    host: str = "127.0.0.1"
    port: int = 8700
    public_url: str | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1_073_741_824)
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=600)
    # A request's header must be complete this long after the connection opened or its previous
    # response ended (also how long an idle kept-alive connection stays open); above the 15 s
    # that aiohttp clients keep idle connections, so a client never reuses one being closed.
    header_timeout_s: float = Field(default=20.0, gt=0, le=3600)
    body_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    # The event loop `cpnode run` serves on: uvloop (libuv) spends less CPU per request and per
    # peer exchange than the standard library's loop; "asyncio" is the standard one.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 65535:
            raise ValueError(f"must be 1–65535, got {value}")  # 0 (any free port) is allowed for tests
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/") if value else value


class DatabaseSection(ConfigSection):
    """`[database]`: SQLite file by default, PostgreSQL by URL."""

    url: str = "sqlite:///data/node.db"
    busy_timeout_ms: int = Field(default=10_000, ge=0, le=600_000)
    pool_size: int = Field(default=5, ge=1, le=100)
    # Threads for the node's blocking database calls (0: one per pooled connection, 2 × pool_size).
    threads: int = Field(default=0, ge=0, le=400)
    # PostgreSQL ends a session idle inside a transaction this long (0: never), so a hung process
    # cannot hold its locks against the other replicas for longer.
    idle_in_transaction_timeout_s: float = Field(default=30.0, ge=0, le=86_400)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith("postgresql+psycopg://")):
            raise ValueError(f"must start with sqlite:/// or postgresql+psycopg://, got {value!r}")
        return value


class KeysSection(ConfigSection):
    """`[keys]`: where the node's signing key lives and how long its key document is valid."""

    path: str = "keys/node.key"
    admin_token_path: str = "keys/admin.token"  # noqa: S105 - a path, not a secret
    document_validity_s: int = Field(default=7 * 24 * 3600, ge=300, le=366 * 24 * 3600)
    # A key file readable by its group is expected where a secret volume gives the pod's group read
    # access (Kubernetes: mode 0440 with fsGroup); say so here and the node stops warning about it.
    # Readable by others, or writable by anyone but the owner, is still refused or warned about.
    allow_group_read: bool = False


class SchedulerSection(ConfigSection):
    """`[scheduler]`: background jobs and the database lease that keeps each on one replica."""

    enabled: bool = True
    lease_ttl_s: int = Field(default=60, ge=5, le=3600)


class LoggingSection(ConfigSection):
    """`[logging]`: text for people or JSON for machines, at a level, with a line per request or not."""

    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"
    access: bool = True  # one line per request (`cpnode.access`); false when a proxy in front logs them


class Settings(BaseModel):
    """The whole configuration of one node, with paths resolved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: NodeSection
    http: HttpSection = HttpSection()
    database: DatabaseSection = DatabaseSection()
    keys: KeysSection = KeysSection()
    scheduler: SchedulerSection = SchedulerSection()
    logging: LoggingSection = LoggingSection()
    federation: FederationSection = FederationSection()
    partners: list[PartnerSection] = Field(default_factory=list)
    issuers: list[IssuerSection] = Field(default_factory=list)
    offers: list[OfferSection] = Field(default_factory=list)
    connectors: ConnectorsSection = ConnectorsSection()
    ledger: LedgerSection = LedgerSection()
    trading: TradingSection = TradingSection()
    tasks: TasksSection = TasksSection()
    migration: MigrationSection = MigrationSection()
    services: ServicesSection = ServicesSection()
    metrics: MetricsSection = MetricsSection()
    accounts: AccountsSection = AccountsSection()
    network: NetworkSection = NetworkSection()
    console: ConsoleSection = ConsoleSection()
    pools: PoolList = Field(default_factory=list)
    supervision: SupervisionSection = SupervisionSection()
    supervisors: list[SupervisorSection] = Field(default_factory=list)
    base_dir: Path = Path()

    def path(self, relative: str) -> Path:
        """Resolve a configured path against the config file's directory."""
        candidate = Path(relative).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate)

    def url_for_port(self, port: int) -> str:
        """The node's base URL: `http.public_url`, else http://HOST:PORT (wildcard hosts → loopback)."""
        if self.http.public_url:
            return self.http.public_url
        host = self.http.host if self.http.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def data_dir(self) -> Path:
        """The node's data directory (`DIR/data`)."""
        return self.base_dir / "data"

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path resolved against the config directory."""
        url = self.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rest = url[len("sqlite:///") :]
            if rest and rest != ":memory:":
                return "sqlite:///" + str(self.path(rest))
        return url


SECTION_NAMES: tuple[str, ...] = tuple(
    name for name, field in Settings.model_fields.items() if name != "base_dir"
)


def _is_table(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _env_scalar(raw: str) -> Any:
    """Parse an environment value as a TOML scalar (`8080`, `true`, `"x"`), else keep the string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def is_service_link(section: str, key: str, value: str) -> bool:
    """Whether `CPNODE_<SECTION>_<KEY>=value` is a Kubernetes service link rather than an override:
    shaped like one, and (unless its value is a link address) naming no key of `section`."""
    link_value = SERVICE_LINK_VALUE_RE.fullmatch(value.strip()) is not None
    if link_value and SERVICE_LINK_PORT_RE.fullmatch(key):
        return True  # NAME_PORT=tcp://IP:PORT, also over a real key (a Service named cpnode-http)
    annotation = Settings.model_fields[section].annotation
    known = (
        key in annotation.model_fields if isinstance(annotation, type) and _is_table(annotation) else False
    )
    return not known and SERVICE_LINK_KEY_RE.fullmatch(key) is not None


def apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Return `data` with `CPNODE_<SECTION>_<KEY>` values applied, and which path came from which variable."""
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in data.items()}
    origins: dict[tuple[str, ...], str] = {}
    table_sections = {name for name in SECTION_NAMES if _is_table(Settings.model_fields[name].annotation)}
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX):
            continue
        section, _, key = var[len(ENV_PREFIX) :].lower().partition("_")
        if section not in table_sections or not key or is_service_link(section, key, raw):
            continue
        table = merged.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        table[key] = _env_scalar(raw)
        origins[(section, key)] = var
    return merged, origins


def _describe(error: Mapping[str, Any], origins: Mapping[tuple[str, ...], str]) -> str:
    loc = tuple(str(part) for part in error["loc"])
    where = ".".join(loc)
    origin = origins.get(loc[:2])
    place = f"'{where}'" + (f" (from {origin})" if origin else "")
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"Error in configuration at {place}: unknown key"
    if kind == "missing":
        return f"Error in configuration at {place}: required but missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind != "value_error" and "input" in error:
        message += f", got {error['input']!r}"
    return f"Error in configuration at {place}: {message}"


def parse_settings(
    data: Mapping[str, Any], base_dir: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate raw config data (plus env overrides) into `Settings`, or raise ConfigError."""
    merged, origins = apply_env_overrides(dict(data), os.environ if environ is None else environ)
    if "base_dir" in merged:
        raise ConfigError(["Error in configuration at 'base_dir': unknown key"])
    try:
        return Settings.model_validate({**merged, "base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError([_describe(err, origins) for err in exc.errors()]) from None


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the TOML config file at `path`, or raise ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [f"Configuration file not found: {path} (create one with `cpnode init DIR`)"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"Configuration file {path} cannot be read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"Error in configuration file {path}: not valid TOML: {exc}"]) from None
    return parse_settings(data, path.resolve().parent, environ)
