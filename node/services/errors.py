"""The services error tree: one root and a machine-readable code on each (statuses: node.http.statuses).

What the caller asked wrongly (`ServiceInputError`, `UnknownServiceError`, `UnknownSiteError`)
changes nothing. `NoReplicaError` and `UpstreamError` are the steering proxy's answers when no
replica can take a request, or the one that took it failed while answering (a remote fault);
`UpstreamTimeoutError` when it was silent for `[services] read_timeout_s`. `UploadError` is the
user's own body failing on the way (cut off): no fault of the replica's.
"""

from __future__ import annotations

from node.errors import CodedError, FieldError


class ServiceError(CodedError, code="service_error"):
    """Root of every services error; `details` are added to the JSON error body."""


class ServiceInputError(ServiceError, FieldError, code="bad_service"):
    """A request that does not validate (bad name, weights, counts); `field` names what is wrong."""


class ForbiddenError(ServiceError, code="forbidden"):
    """A consumer acting for another consumer."""


class UnknownServiceError(ServiceError, LookupError, code="unknown_service"):
    """No such service, or one the caller may not see (answered alike)."""


class UnknownReplicaError(ServiceError, LookupError, code="unknown_replica"):
    """The service has no such replica."""


class ServiceExistsError(ServiceError, code="service_exists"):
    """A service of that name exists already (with other settings)."""


class UnknownSiteError(ServiceError, ValueError, code="unknown_site"):
    """The user's site is not a site this node knows (config pools, partner sites, the network)."""


class NoReplicaError(ServiceError, code="no_healthy_replica"):
    """No replica of the service can take a request now (none healthy, or all drained)."""


class UpstreamError(ServiceError, code="replica_failed"):
    """The replica that took the request failed to answer it (remote fault)."""


class UpstreamTimeoutError(UpstreamError, TimeoutError, code="replica_timeout"):
    """The replica that took the request sent nothing for `read_timeout_s` (remote fault)."""


class UploadError(ServiceError, code="upload_failed"):
    """The user's request body failed while it was streamed to a replica (the user's side)."""
