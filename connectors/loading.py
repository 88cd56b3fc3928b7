"""Finding plugins: entry points of the group `cpnode.connectors`, each naming a plugin class.

A plugin class has `kind` ("compute" or "network") and a classmethod
`from_options(name, options) -> plugin`. Entry points are read fresh on every lookup, so a plugin
package installed while the node runs is found without a restart.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from connectors.contract import ComputePlugin
from connectors.errors import PluginLoadError, PluginNotFound
from connectors.network.contract import NetworkPlugin

GROUP = "cpnode.connectors"
Plugin = ComputePlugin | NetworkPlugin


def installed() -> dict[str, EntryPoint]:
    """Every installed plugin entry point, by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_class(entry_point: str, *, reload: bool = False) -> type[Plugin]:
    """The plugin class an entry point names (optionally re-importing its module, for upgrades)."""
    found = installed().get(entry_point)
    if found is None:
        known = ", ".join(sorted(installed())) or "none"
        raise PluginNotFound(f"no plugin entry point {entry_point!r} in {GROUP} (installed: {known})")
    try:
        if reload and found.module in sys.modules:
            importlib.reload(sys.modules[found.module])
        loaded = found.load()
    except Exception as exc:  # a broken plugin must never take the node down
        raise PluginLoadError(
            f"plugin {entry_point!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(loaded, type) and issubclass(loaded, ComputePlugin | NetworkPlugin)):
        raise PluginLoadError(
            f"entry point {entry_point!r} does not name a ComputePlugin or NetworkPlugin class"
        )
    return loaded


def build(entry_point: str, name: str, options: Mapping[str, Any], *, reload: bool = False) -> Plugin:
    """Construct the plugin `name` from an entry point and its options."""
    cls = load_class(entry_point, reload=reload)
    factory = getattr(cls, "from_options", None)
    if factory is None:
        raise PluginLoadError(f"plugin class {cls.__name__} has no from_options(name, options)")
    try:
        plugin = factory(name, dict(options))
    except Exception as exc:
        raise PluginLoadError(f"plugin {name!r} ({entry_point}) rejected its options: {exc}") from exc
    if not isinstance(plugin, ComputePlugin | NetworkPlugin):
        raise PluginLoadError(f"{cls.__name__}.from_options did not return a plugin")
    return plugin
