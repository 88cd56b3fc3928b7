"""The node's web console for operators and consumers: server-rendered pages over the node's own
API (node.console.api), with sealed-cookie sessions and CSRF tokens (node.console.session), charts
drawn as SVG on the server (node.console.charts), and vendored, pinned assets (static/vendor)."""

from __future__ import annotations

from node.console.settings import ConsoleSection

__all__ = ["ConsoleSection"]
