"""The ledger's error tree: one root, stdlib bases where they fit, a machine-readable code on each
(the node's HTTP edge maps the classes to statuses).

Per-transfer outcomes (`exceeds_credits`, `exists_with_different_field`, ...) are not exceptions:
they come back as `TransferResult`s, one per request, because a batch mixes successes and failures.
Exceptions are for whole calls that cannot proceed: a malformed request, a storage failure, a
bundle that does not verify, a summary that cannot be reconciled.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises."""

    code = "ledger_error"


class RequestError(LedgerError, ValueError):
    """A request is malformed; nothing was changed. `field` names the offending field."""

    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(LedgerError, LookupError):
    """An account, transfer, checkpoint or discrepancy does not exist."""

    code = "not_found"


class ConflictError(LedgerError):
    """The request is well formed but the ledger's state refuses it (e.g. closing an account with holds)."""

    code = "conflict"


class StorageError(LedgerError, RuntimeError):
    """The database failed or stayed busy after retries; the batch was not applied."""

    code = "storage_unavailable"


class AuditError(LedgerError, ValueError):
    """An audit bundle or checkpoint does not verify. `where` names the file and, if known, the sequence."""

    code = "audit_failed"

    def __init__(self, where: str, message: str, seq: int | None = None) -> None:
        self.where = where
        self.seq = seq
        self.message = message
        location = f"{where} seq {seq}" if seq is not None else where
        super().__init__(f"{location}: {message}")


class ProofError(LedgerError, ValueError):
    """A Merkle inclusion or consistency proof does not verify, or its parameters are invalid."""

    code = "bad_proof"


class ReconcileError(LedgerError, ValueError):
    """A reconciliation summary is malformed, for another pair of nodes, or for another window."""

    code = "bad_summary"
