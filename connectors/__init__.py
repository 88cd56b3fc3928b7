"""Interconnection control (互联管控层): compute and network plugins that reach resource pools and
network controllers, plus reference pools and simulators. Never imports `node`, `federation` or
`ledger`; the node composes it through the names below."""

from connectors.contract import CONTRACT_VERSION, ComputePlugin, DataSource, Instance, InstanceSpec, Program
from connectors.errors import ConnectorError
from connectors.host import HostedPlugin, HostSettings, PluginHost, RefreshReport
from connectors.identifier import ComputeIdentifier, RegistrationClaim
from connectors.metric import chip_score, composite_score, dynamic_score, load_chips, static_score
from connectors.network.contract import NetworkPlugin, Path, PathRequest, Topology
from connectors.offers import Offer, PoolIdentity, offers_from_snapshots
from connectors.store import PluginStore

__all__ = [
    "CONTRACT_VERSION",
    "ComputeIdentifier",
    "ComputePlugin",
    "ConnectorError",
    "DataSource",
    "HostSettings",
    "HostedPlugin",
    "Instance",
    "InstanceSpec",
    "NetworkPlugin",
    "Offer",
    "Path",
    "PathRequest",
    "PluginHost",
    "PluginStore",
    "PoolIdentity",
    "Program",
    "RefreshReport",
    "RegistrationClaim",
    "Topology",
    "chip_score",
    "composite_score",
    "dynamic_score",
    "load_chips",
    "offers_from_snapshots",
    "static_score",
]
