"""Every error table keeps what clients see: each class's bases, code, HTTP status, fault side and
the JSON body the node answers it with, pinned row by row (declaring the tables differently must
leave this text as it is)."""

from __future__ import annotations

import importlib
import inspect

from node.errors import FieldError
from node.http.errors import error_response
from node.http.statuses import status_for
from node.trading.errors import Refusal

MODULES = (
    "connectors.errors",
    "federation.errors",
    "node.accounts.lifecycle",
    "node.market.errors",
    "node.migration.errors",
    "node.services.errors",
    "node.statements.errors",
    "node.tasks.errors",
    "node.trading.errors",
)

# module.Class | bases | code | HTTP status | remote (connectors) | JSON body of an instance
SNAPSHOT = """
connectors.errors.ConnectorError | Exception | connector_error | 502 | True | {"error": "connector_error", "message": "m"}
connectors.errors.InvalidRequest | ConnectorError, ValueError | invalid_request | 400 | False | {"error": "invalid_request", "message": "m"}
connectors.errors.IdentifierError | InvalidRequest | bad_identifier | 400 | False | {"error": "bad_identifier", "message": "m"}
connectors.errors.MetricError | InvalidRequest | bad_metric | 400 | False | {"error": "bad_metric", "message": "m"}
connectors.errors.UnknownChip | InvalidRequest | unknown_chip | 400 | False | {"error": "unknown_chip", "message": "m"}
connectors.errors.NotFound | ConnectorError, LookupError | not_found | 404 | False | {"error": "not_found", "message": "m"}
connectors.errors.PluginNotFound | NotFound | plugin_not_found | 404 | False | {"error": "plugin_not_found", "message": "m"}
connectors.errors.InvalidState | ConnectorError | invalid_state | 409 | False | {"error": "invalid_state", "message": "m"}
connectors.errors.NoCapacity | ConnectorError | no_capacity | 409 | False | {"error": "no_capacity", "message": "m"}
connectors.errors.NoPath | ConnectorError | no_path | 409 | False | {"error": "no_path", "message": "m"}
connectors.errors.PluginLoadError | ConnectorError | plugin_load_failed | 422 | False | {"error": "plugin_load_failed", "message": "m"}
connectors.errors.PluginOffline | ConnectorError | plugin_offline | 503 | True | {"error": "plugin_offline", "message": "m"}
connectors.errors.PluginTimeout | ConnectorError, TimeoutError | plugin_timeout | 504 | True | {"error": "plugin_timeout", "message": "m"}
connectors.errors.PlatformError | ConnectorError | platform_error | 502 | True | {"error": "platform_error", "message": "m"}
connectors.errors.Unauthorized | ConnectorError, PermissionError | unauthorized | 401 | False | {"error": "unauthorized", "message": "m"}
federation.errors.CodedError | Exception | error | None | None | None
federation.errors.FederationError | CodedError | federation_error | 400 | None | {"error": "federation_error", "message": "m"}
federation.errors.DocumentError | FederationError, ValueError | bad_document | 400 | None | {"error": "bad_document", "message": "m"}
federation.errors.TooLargeError | DocumentError | too_large | 413 | None | {"error": "too_large", "message": "m"}
federation.errors.SignatureError | FederationError, ValueError | bad_signature | 401 | None | {"error": "bad_signature", "message": "m"}
federation.errors.KeyFormatError | FederationError, ValueError | bad_key | 400 | None | {"error": "bad_key", "message": "m"}
federation.errors.AuthError | FederationError, PermissionError | unauthorized | 401 | None | {"error": "unauthorized", "message": "m"}
federation.errors.MalformedRequestError | FederationError, ValueError | malformed_signature | 400 | None | {"error": "malformed_signature", "message": "m"}
federation.errors.NotFoundError | FederationError, LookupError | not_found | 404 | None | {"error": "not_found", "message": "m"}
federation.errors.ConflictError | FederationError | conflict | 409 | None | {"error": "conflict", "message": "m"}
federation.errors.RateLimitedError | FederationError | rate_limited | 429 | None | {"error": "rate_limited", "message": "m"}
federation.errors.UnsafeURLError | FederationError, ValueError | unsafe_url | 400 | None | {"error": "unsafe_url", "message": "m"}
federation.errors.CatalogRejected | FederationError | catalog_rejected | 422 | None | {"error": "catalog_rejected", "message": "m"}
federation.errors.PeerError | FederationError | peer_error | 502 | None | {"error": "peer_error", "message": "m"}
federation.errors.PeerTimeoutError | PeerError, TimeoutError | peer_timeout | 504 | None | {"error": "peer_timeout", "message": "m"}
node.accounts.lifecycle.AccountError | CodedError | account_error | 400 | None | {"error": "account_error", "message": "m"}
node.accounts.lifecycle.AccountRequestError | AccountError, ValueError | bad_request | 400 | None | {"error": "bad_request", "message": "m"}
node.accounts.lifecycle.UnknownAccountError | AccountError, LookupError | unknown_account | 404 | None | {"error": "unknown_account", "message": "m"}
node.accounts.lifecycle.AccountStateError | AccountError | bad_transition | 409 | None | {"error": "bad_transition", "message": "m"}
node.accounts.lifecycle.AccountRefusedError | AccountError, PermissionError | account_suspended | 403 | None | {"error": "account_suspended", "message": "m"}
node.market.errors.MarketError | CodedError | market_error | 400 | None | {"error": "market_error", "message": "m"}
node.market.errors.DemandError | MarketError, FieldError | bad_demand | 422 | None | {"error": "bad_demand", "message": "f: r", "field": "f"}
node.market.errors.NoMatchError | MarketError, LookupError | no_match | 409 | None | {"error": "no_match", "message": "m"}
node.market.errors.PlanFailedError | MarketError | plan_failed | 409 | None | {"error": "plan_failed", "message": "m"}
node.market.errors.StrategyError | MarketError, FieldError | bad_strategy | 422 | None | {"error": "bad_strategy", "message": "f: r", "field": "f"}
node.market.errors.UnknownStrategyError | MarketError, LookupError | unknown_strategy | 404 | None | {"error": "unknown_strategy", "message": "m"}
node.migration.errors.MigrationError | CodedError | migration_error | 400 | None | {"error": "migration_error", "message": "m"}
node.migration.errors.MigrationRequestError | MigrationError, ValueError | bad_migration_request | 422 | None | {"error": "bad_migration_request", "message": "m"}
node.migration.errors.UnknownMigration | MigrationError, LookupError | unknown_migration | 404 | None | {"error": "unknown_migration", "message": "m"}
node.migration.errors.MigrationConflict | MigrationError | migration_conflict | 409 | None | {"error": "migration_conflict", "message": "m"}
node.migration.errors.MigrationUnavailable | MigrationError | migration_unavailable | 503 | None | {"error": "migration_unavailable", "message": "m"}
node.migration.errors.StepFailed | MigrationError | step_failed | 400 | None | {"error": "step_failed", "message": "m"}
node.services.errors.ServiceError | CodedError | service_error | 400 | None | {"error": "service_error", "message": "m"}
node.services.errors.ServiceInputError | ServiceError, FieldError | bad_service | 422 | None | {"error": "bad_service", "message": "f: r", "field": "f"}
node.services.errors.ForbiddenError | ServiceError | forbidden | 403 | None | {"error": "forbidden", "message": "m"}
node.services.errors.UnknownServiceError | ServiceError, LookupError | unknown_service | 404 | None | {"error": "unknown_service", "message": "m"}
node.services.errors.UnknownReplicaError | ServiceError, LookupError | unknown_replica | 404 | None | {"error": "unknown_replica", "message": "m"}
node.services.errors.ServiceExistsError | ServiceError | service_exists | 409 | None | {"error": "service_exists", "message": "m"}
node.services.errors.UnknownSiteError | ServiceError, ValueError | unknown_site | 400 | None | {"error": "unknown_site", "message": "m"}
node.services.errors.NoReplicaError | ServiceError | no_healthy_replica | 503 | None | {"error": "no_healthy_replica", "message": "m"}
node.services.errors.UpstreamError | ServiceError | replica_failed | 502 | None | {"error": "replica_failed", "message": "m"}
node.services.errors.UpstreamTimeoutError | UpstreamError, TimeoutError | replica_timeout | 504 | None | {"error": "replica_timeout", "message": "m"}
node.services.errors.UploadError | ServiceError | upload_failed | 400 | None | {"error": "upload_failed", "message": "m"}
node.statements.errors.StatementError | CodedError | statement_error | 400 | None | {"error": "statement_error", "message": "m"}
node.statements.errors.StatementRequestError | StatementError, ValueError | bad_request | 400 | None | {"error": "bad_request", "message": "m"}
node.statements.errors.PeriodNotClosed | StatementError | period_not_closed | 409 | None | {"error": "period_not_closed", "message": "m"}
node.statements.errors.UnknownStatement | StatementError, LookupError | not_found | 404 | None | {"error": "not_found", "message": "m"}
node.statements.errors.StatementConflict | StatementError | statement_conflict | 409 | None | {"error": "statement_conflict", "message": "m"}
node.tasks.errors.TaskError | CodedError | task_error | 400 | None | {"error": "task_error", "message": "m"}
node.tasks.errors.UnknownTaskError | TaskError, LookupError | unknown_task | 404 | None | {"error": "unknown_task", "message": "m"}
node.tasks.errors.TaskStateError | TaskError | bad_task_state | 409 | None | {"error": "bad_task_state", "message": "m"}
node.tasks.errors.TasksUnavailableError | TaskError | tasks_unavailable | 503 | None | {"error": "tasks_unavailable", "message": "m"}
node.tasks.errors.PartnerTaskError | TaskError | partner_task_error | 502 | None | {"error": "partner_task_error", "message": "m"}
node.trading.errors.TradingError | CodedError | trading_error | 400 | None | {"error": "trading_error", "message": "m"}
node.trading.errors.OrderRequestError | TradingError, ValueError | bad_request | 400 | None | {"error": "bad_request", "message": "m"}
node.trading.errors.UnknownError | TradingError, LookupError | not_found | 404 | None | {"error": "not_found", "message": "m"}
node.trading.errors.StateError | TradingError | bad_order_state | 409 | None | {"error": "bad_order_state", "message": "m"}
node.trading.errors.RefusedError | TradingError | refused | 409 | None | {"error": "refused", "message": "m"}
node.trading.errors.PartnerUnavailableError | TradingError, TimeoutError | partner_unavailable | 504 | None | {"error": "partner_unavailable", "message": "m"}
node.trading.errors.ProtocolError | TradingError | bad_partner_answer | 502 | None | {"error": "bad_partner_answer", "message": "m"}
node.trading.errors.Refusal | TradingError | trading_error | 409 | None | {"error": "refused_here", "message": "m"}
node.trading.errors.PartnerFaultError | RefusedError | bad_partner_answer | 502 | None | {"error": "bad_partner_answer", "message": "m"}
"""


def _instance(cls: type[Exception]) -> Exception:
    """One instance of `cls`, made the way its package raises it."""
    if issubclass(cls, FieldError):
        return cls("f", "r")
    if cls is Refusal:
        return Refusal(409, "refused_here", "m")
    return cls("m")


def _row(module: str, cls: type[Exception]) -> str:
    """The snapshot's line for one error class."""
    error = _instance(cls)
    status = status_for(error)
    code = str(getattr(error, "code", ""))
    body = None
    if status is not None:
        raw = error_response(status, code, str(error), **getattr(error, "details", {})).body
        assert isinstance(raw, bytes)
        body = raw.decode()
    bases = ", ".join(base.__name__ for base in cls.__bases__)
    remote = getattr(cls, "remote", None)
    return f"{module}.{cls.__name__} | {bases} | {getattr(cls, 'code', '')} | {status} | {remote} | {body}"


def test_every_error_table_answers_as_before() -> None:
    """Each module's error classes, in declaration order, give the pinned bases, code, status and body."""
    rows = [
        _row(module, cls)
        for module in MODULES
        for cls in vars(importlib.import_module(module)).values()
        if inspect.isclass(cls) and issubclass(cls, Exception) and cls.__module__ == module
    ]
    assert rows == SNAPSHOT.strip().splitlines()
