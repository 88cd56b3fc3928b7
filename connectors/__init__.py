"""Interconnection control (互联管控层): compute and network plugins that reach resource pools and
network controllers, plus reference pools and simulators. Never imports `node`, `federation` or
`ledger`; the node composes it through the names below."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.chips import canonical_chip
    from connectors.contract import (
        CONTRACT_VERSION,
        Capabilities,
        ComputePlugin,
        DataSource,
        InputFile,
        Instance,
        InstanceSpec,
        LogChunk,
        OutputFile,
        Outputs,
        Program,
    )
    from connectors.errors import ConnectorError
    from connectors.frameworks import Image, NoImage, resolve
    from connectors.host import PluginHost
    from connectors.hosted import HostedPlugin, HostSettings, RefreshReport
    from connectors.identifier import ComputeIdentifier, RegistrationClaim
    from connectors.metric import chip_score, composite_score, dynamic_score, load_chips, static_score
    from connectors.network.contract import NetworkPlugin, Path, PathRequest, Topology
    from connectors.offers import Offer, PoolIdentity, offers_from_snapshots
    from connectors.store import PluginStore

# Loaded on first use, so that importing one module (a config section, the contract) does not pull
# in the plugin host, the HTTP client and the database layer.
_LAZY: dict[str, str] = {
    "CONTRACT_VERSION": "connectors.contract",
    "Capabilities": "connectors.contract",
    "Image": "connectors.frameworks",
    "InputFile": "connectors.contract",
    "LogChunk": "connectors.contract",
    "NoImage": "connectors.frameworks",
    "OutputFile": "connectors.contract",
    "Outputs": "connectors.contract",
    "canonical_chip": "connectors.chips",
    "resolve": "connectors.frameworks",
    "ComputeIdentifier": "connectors.identifier",
    "ComputePlugin": "connectors.contract",
    "ConnectorError": "connectors.errors",
    "DataSource": "connectors.contract",
    "HostSettings": "connectors.hosted",
    "HostedPlugin": "connectors.hosted",
    "Instance": "connectors.contract",
    "InstanceSpec": "connectors.contract",
    "NetworkPlugin": "connectors.network.contract",
    "Offer": "connectors.offers",
    "Path": "connectors.network.contract",
    "PathRequest": "connectors.network.contract",
    "PluginHost": "connectors.host",
    "PluginStore": "connectors.store",
    "PoolIdentity": "connectors.offers",
    "Program": "connectors.contract",
    "RefreshReport": "connectors.hosted",
    "RegistrationClaim": "connectors.identifier",
    "Topology": "connectors.network.contract",
    "chip_score": "connectors.metric",
    "composite_score": "connectors.metric",
    "dynamic_score": "connectors.metric",
    "load_chips": "connectors.metric",
    "offers_from_snapshots": "connectors.offers",
    "static_score": "connectors.metric",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'connectors' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CONTRACT_VERSION",
    "Capabilities",
    "ComputeIdentifier",
    "ComputePlugin",
    "ConnectorError",
    "DataSource",
    "HostSettings",
    "HostedPlugin",
    "Image",
    "InputFile",
    "Instance",
    "InstanceSpec",
    "LogChunk",
    "NetworkPlugin",
    "NoImage",
    "Offer",
    "OutputFile",
    "Outputs",
    "Path",
    "PathRequest",
    "PluginHost",
    "PluginStore",
    "PoolIdentity",
    "Program",
    "RefreshReport",
    "RegistrationClaim",
    "Topology",
    "canonical_chip",
    "chip_score",
    "composite_score",
    "dynamic_score",
    "load_chips",
    "offers_from_snapshots",
    "resolve",
    "static_score",
]
