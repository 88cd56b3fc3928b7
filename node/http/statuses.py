"""The one table from error classes to HTTP statuses at the node's HTTP edge.

Every package raises errors that carry only a machine-readable `code`; the error middleware
answers each with the status of its nearest class here (its own, then its bases in MRO order).
`ApiError` and the seller's `Refusal` carry the status they were raised with. An error with no
entry is an internal error (500, logged).
"""

from __future__ import annotations

from connectors.statuses import STATUS_BY_ERROR as CONNECTOR_STATUSES
from connectors.statuses import status_in
from federation import errors as fed
from federation.settlement import SettlementUnavailable
from federation.trades import TradingUnavailable
from ledger import errors as led
from node.accounts import lifecycle as accounts
from node.http.guard import BodyTimeoutError
from node.market import errors as market
from node.migration import errors as migration
from node.migration.machine import MigrationTransitionError
from node.services import errors as services
from node.statements import errors as statements
from node.tasks import errors as tasks
from node.tasks.machine import TaskTransitionError
from node.tasks.spec import TaskSpecError
from node.trading import errors as trading

STATUS_BY_ERROR: dict[type[Exception], int] = {
    **CONNECTOR_STATUSES,
    led.LedgerError: 500,
    led.RequestError: 400,
    led.NotFoundError: 404,
    led.ConflictError: 409,
    led.StorageError: 503,
    led.AuditError: 422,
    led.ProofError: 422,
    led.ReconcileError: 422,
    fed.FederationError: 400,
    fed.TooLargeError: 413,
    fed.SignatureError: 401,
    fed.AuthError: 401,
    fed.NotFoundError: 404,
    fed.ConflictError: 409,
    fed.RateLimitedError: 429,
    fed.CatalogRejected: 422,
    fed.PeerError: 502,
    fed.PeerTimeoutError: 504,
    SettlementUnavailable: 503,
    TradingUnavailable: 503,
    trading.TradingError: 400,
    trading.UnknownError: 404,
    trading.StateError: 409,
    trading.RefusedError: 409,
    trading.PartnerUnavailableError: 504,
    trading.ProtocolError: 502,
    trading.PartnerFaultError: 502,
    market.MarketError: 400,
    market.DemandError: 422,
    market.NoMatchError: 409,
    market.PlanFailedError: 409,
    market.StrategyError: 422,
    market.UnknownStrategyError: 404,
    TaskSpecError: 422,
    TaskTransitionError: 409,
    tasks.TaskError: 400,
    tasks.UnknownTaskError: 404,
    tasks.TaskStateError: 409,
    tasks.TasksUnavailableError: 503,
    tasks.PartnerTaskError: 502,
    migration.MigrationError: 400,
    migration.MigrationRequestError: 422,
    migration.UnknownMigration: 404,
    migration.MigrationConflict: 409,
    migration.MigrationUnavailable: 503,
    MigrationTransitionError: 409,
    services.ServiceError: 400,
    services.ServiceInputError: 422,
    services.ForbiddenError: 403,
    services.UnknownServiceError: 404,
    services.UnknownReplicaError: 404,
    services.ServiceExistsError: 409,
    services.UnknownSiteError: 400,
    services.NoReplicaError: 503,
    services.UpstreamError: 502,
    services.UpstreamTimeoutError: 504,
    BodyTimeoutError: 408,
    statements.StatementError: 400,
    statements.UnknownStatement: 404,
    statements.PeriodNotClosed: 409,
    statements.StatementConflict: 409,
    accounts.AccountError: 400,
    accounts.AccountRequestError: 400,
    accounts.UnknownAccountError: 404,
    accounts.AccountStateError: 409,
    accounts.AccountRefusedError: 403,
}


def status_for(error: BaseException) -> int | None:
    """The HTTP status `error` is answered with, or None for an error that is not a coded one."""
    own = getattr(error, "http_status", None)  # ApiError, Refusal: chosen where they were raised
    if isinstance(own, int):
        return own
    return status_in(STATUS_BY_ERROR, error)
