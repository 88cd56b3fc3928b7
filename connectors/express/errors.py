"""The data express's errors, rooted in `ExpressError`.

A `TransferError` is what moving a chunk can run into: `fatal` ones (disk full, permission,
manifest mismatch, a 4xx other than a bad chunk) stop the job at once; the others (connection
reset, timeouts, 5xx) are retried with backoff until the job's attempts run out. `BadChunk` (the
destination refused a chunk's bytes) and `UploadLost` (the destination no longer has the upload)
are transient with a remedy of their own. `ExpressRefused` and `ExpressUnavailable` are what the
control API's client raises.
"""

from __future__ import annotations

from typing import Any


class ExpressError(Exception):
    """Root of every data-express error."""

    code = "express_error"


class TransferError(ExpressError):
    """A chunk, file or endpoint call failed; `fatal` says whether retrying can help."""

    def __init__(self, code: str, message: str, *, fatal: bool, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal
        self.extra = extra or {}

    def as_json(self) -> dict[str, Any]:
        """`{"code", "message", "fatal"}`, as progress and job records show it."""
        return {"code": self.code, "message": str(self), "fatal": self.fatal}


class BadChunk(TransferError):
    """The destination refused a chunk's bytes (its SHA-256 did not match): send that chunk again."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_chunk", message, fatal=False)


class UploadLost(TransferError):
    """The destination has no open upload for the file any more: open it again and continue."""

    def __init__(self, message: str) -> None:
        super().__init__("no_upload", message, fatal=False)


class ChunksMissing(TransferError):
    """Commit found chunks missing (or changed on disk): send those again."""

    def __init__(self, message: str, missing: set[int]) -> None:
        super().__init__("chunks_missing", message, fatal=False)
        self.missing = missing


class Stalled(ExpressError):
    """A chunk ran out of attempts: the job stops, its partial uploads stay for a resume."""

    def __init__(self, cause: TransferError, attempts: int) -> None:
        super().__init__(f"gave up after {attempts} attempts: {cause}")
        self.cause = cause
        self.code = cause.code


class JobNotFound(ExpressError, LookupError):
    """No job with that id."""

    code = "not_found"


class JobConflict(ExpressError):
    """A job with that id exists with a different request, or the job's state forbids the call."""

    code = "invalid_state"


class ExpressRefused(ExpressError):
    """The express process answered a control call with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code


class ExpressUnavailable(ExpressError, ConnectionError):
    """The express process could not be reached."""

    code = "express_unavailable"
