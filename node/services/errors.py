"""The services error tree: one root and a machine-readable code on each (statuses: node.http.statuses).

What the caller asked wrongly (`ServiceInputError`, `UnknownServiceError`, `UnknownSiteError`)
changes nothing. `NoReplicaError` and `UpstreamError` are the steering proxy's answers when no
replica can take a request, or the one that took it failed while answering (a remote fault);
`UpstreamTimeoutError` when it was silent for `[services] read_timeout_s`. `UploadError` is the
user's own body failing on the way (cut off): no fault of the replica's.
"""

from __future__ import annotations

from node.errors import CodedError, FieldError


class ServiceError(CodedError):
    """Root of every services error; `details` are added to the JSON error body."""

    code = "service_error"


class ServiceInputError(ServiceError, FieldError):
    """A request that does not validate (bad name, weights, counts); `field` names what is wrong."""

    code = "bad_service"


class ForbiddenError(ServiceError):
    """A consumer acting for another consumer."""

    code = "forbidden"


class UnknownServiceError(ServiceError, LookupError):
    """No such service, or one the caller may not see (answered alike)."""

    code = "unknown_service"


class UnknownReplicaError(ServiceError, LookupError):
    """The service has no such replica."""

    code = "unknown_replica"


class ServiceExistsError(ServiceError):
    """A service of that name exists already (with other settings)."""

    code = "service_exists"


class UnknownSiteError(ServiceError, ValueError):
    """The user's site is not a site this node knows (config pools, partner sites, the network)."""

    code = "unknown_site"


class NoReplicaError(ServiceError):
    """No replica of the service can take a request now (none healthy, or all drained)."""

    code = "no_healthy_replica"


class UpstreamError(ServiceError):
    """The replica that took the request failed to answer it (remote fault)."""

    code = "replica_failed"


class UpstreamTimeoutError(UpstreamError, TimeoutError):
    """The replica that took the request sent nothing for `read_timeout_s` (remote fault)."""

    code = "replica_timeout"


class UploadError(ServiceError):
    """The user's request body failed while it was streamed to a replica (the user's side)."""

    code = "upload_failed"
