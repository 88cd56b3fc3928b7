"""The data express (数据快递): moves a task's state files straight from the source pool's storage
endpoint to the destination pool's, verified chunk by chunk, resumable, within a bandwidth cap.

It runs as its own process beside a pool (`cpnode express`); the node drives it through the control
API (`ExpressClient`) and never carries state bytes itself. The storage side of the protocol is in
`connectors.storage` (manifests and verified chunk uploads), the manifest in `connectors.manifest`.
"""

from connectors.express.client import ExpressClient
from connectors.express.errors import ExpressError, ExpressRefused, ExpressUnavailable
from connectors.express.jobs import JobError, JobSpec, JobView, ProgressView

__all__ = [
    "ExpressClient",
    "ExpressError",
    "ExpressRefused",
    "ExpressUnavailable",
    "JobError",
    "JobSpec",
    "JobView",
    "ProgressView",
]
