"""The migration error tree: one root and a machine-readable code on each (statuses: node.http.statuses).

`MigrationRequestError` (400/422) and `UnknownMigration` (404) are about what a caller asked and
change nothing; `MigrationConflict` (409) is a request the migration's state forbids;
`MigrationUnavailable` (503) says this process cannot do it (no plugin host, no data express).
`StepFailed` is a step that cannot succeed by trying again (a pool refused, the path broke twice,
the destination's files differ): the migration rolls back. Anything else a step raises is judged
by `is_transient`: a platform, plugin, express or database that may answer next time.
"""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from connectors.errors import ConnectorError
from connectors.express import ExpressUnavailable
from connectors.express.errors import TransferError
from node.errors import CodedError


class MigrationError(CodedError, code="migration_error"):
    """Root of every migration error; `details` are added to the JSON error body."""


class MigrationRequestError(MigrationError, ValueError, code="bad_migration_request"):
    """A migration request that cannot be carried out as written (nothing is stored)."""


class UnknownMigration(MigrationError, LookupError, code="unknown_migration"):
    """No migration with that id."""


class MigrationConflict(MigrationError, code="migration_conflict"):
    """The migration's state, or an existing migration with the same id, forbids the request."""


class MigrationUnavailable(MigrationError, code="migration_unavailable"):
    """This process cannot do it: it hosts no plugins, or no data express is configured."""


class StepFailed(MigrationError, code="step_failed"):
    """A step that trying again cannot fix: the migration rolls back (before its cutover commits)."""


def is_transient(exc: BaseException) -> bool:
    """Whether a step that raised `exc` may succeed when tried again: a platform or plugin fault
    (a connectors error on the remote side), an unreachable express or storage endpoint, a database
    hiccup."""
    if isinstance(exc, ConnectorError):
        return exc.remote
    if isinstance(exc, TransferError):
        return not exc.fatal
    return isinstance(exc, ExpressUnavailable | OperationalError | ConnectionError | TimeoutError)


def describe(exc: BaseException) -> str:
    """`code: message` of an error, as a migration records it."""
    code = getattr(exc, "code", None) or type(exc).__name__
    return f"{code}: {exc}"[:1000]
