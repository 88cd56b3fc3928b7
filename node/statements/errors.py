"""The statements error tree: one root, a machine-readable code on each (statuses in node.http.statuses)."""

from __future__ import annotations

from node.errors import CodedError


class StatementError(CodedError, code="statement_error"):
    """Root of every statements error."""


class StatementRequestError(StatementError, ValueError, code="bad_request"):
    """A malformed request (period, consumer, partner); nothing was issued."""


class PeriodNotClosed(StatementError, code="period_not_closed"):
    """The period has not ended yet (or only just): no statement can be issued for it."""


class UnknownStatement(StatementError, LookupError, code="not_found"):
    """No such statement or account (or not one the caller may see)."""


class StatementConflict(StatementError, code="statement_conflict"):
    """The request contradicts what is issued (a period before the account's first statement)."""
