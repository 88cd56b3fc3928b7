"""Where replicas and users are on the network, for steering: the node's network view
(node.network) as steering's `Latencies`, and the site of a replica a partner runs.

The view is read from the database each health round (the network component's job keeps it
fresh); a site it does not know is no path here (the configured table or the assumed latency
count instead), never an error: whether a user's site is known is asked with `knows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.network.view import NetworkView, UnknownSite, partner_site


@dataclass
class ViewLatencies:
    """The current network view as steering's latency source (one-way latency of the best path)."""

    view: NetworkView = field(default_factory=NetworkView)

    def latency_ms(self, site_a: str, site_b: str) -> float | None:
        """The view's latency, or None for a site it does not know or no path."""
        try:
            return self.view.latency_ms(site_a, site_b)
        except UnknownSite:
            return None

    def knows(self, site: str) -> bool:
        """Whether the view knows `site`."""
        return self.view.knows(site)

    def partner_site(self, partner: str) -> str | None:
        """The partner's measured pseudo-site, when the view has one."""
        site = partner_site(partner)
        return site if self.view.knows(site) else None
