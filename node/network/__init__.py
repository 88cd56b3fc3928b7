"""Network awareness (算网感知): the merged view of the network plugins' topologies.

Pure core: `view` (the `NetworkView`: latency and best path between two sites). Edges: `refresh`
(reads the plugins' topologies and stores the view), `component` (`GET /api/v1/network`, the job).
"""

from node.network.view import LOCAL_MBPS, NetworkView, Route, UnknownSite, ViewLink, merge

__all__ = ["LOCAL_MBPS", "NetworkView", "Route", "UnknownSite", "ViewLink", "merge"]
