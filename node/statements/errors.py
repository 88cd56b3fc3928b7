"""The statements error tree: one root, a machine-readable code on each (statuses in node.http.statuses)."""

from __future__ import annotations

from node.errors import CodedError


class StatementError(CodedError):
    """Root of every statements error."""

    code = "statement_error"


class StatementRequestError(StatementError, ValueError):
    """A malformed request (period, consumer, partner); nothing was issued."""

    code = "bad_request"


class PeriodNotClosed(StatementError):
    """The period has not ended yet (or only just): no statement can be issued for it."""

    code = "period_not_closed"


class UnknownStatement(StatementError, LookupError):
    """No such statement or account (or not one the caller may see)."""

    code = "not_found"


class StatementConflict(StatementError):
    """The request contradicts what is issued (a period before the account's first statement)."""

    code = "statement_conflict"
