"""Settlement ledger: double-entry accounts, idempotent transfers, two-phase holds, a Merkle log
with signed checkpoints, audit bundles and reconciliation. Never imports `node`, `federation` or
`connectors`: the node hands it an SQLAlchemy engine and its Ed25519 key as plain values.

Pure core: records, validation, rules, holds, balances, merkle, checkpoint, bundle, verify,
reconcile. Storage edge (SQLAlchemy Core on a given Engine): ledger.store.*.

The names below load their submodule on first use (PEP 562), so importing `ledger` or one of
its pure modules (`ledger.rules`, `ledger.records`, ...) does not import SQLAlchemy; a command's
`--help` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint, verify_checkpoint
    from ledger.errors import (
        AuditError,
        ConflictError,
        LedgerError,
        NotFoundError,
        ProofError,
        ReconcileError,
        RequestError,
        StorageError,
    )
    from ledger.jobs import checkpoint_job, origin_for, sweep_job
    from ledger.reconcile import (
        Discrepancy,
        DiscrepancyKind,
        Summary,
        Window,
        build_summary,
        diff_summaries,
        parse_summary,
        render_report,
    )
    from ledger.records import (
        CORRECTION_CODE,
        Account,
        AccountKind,
        AccountResult,
        AccountSpec,
        Balance,
        Status,
        Transfer,
        TransferKind,
        TransferRequest,
        TransferResult,
    )
    from ledger.statement_verify import StatementReport, verify_statement
    from ledger.store.accounts import (
        close_account,
        create_accounts,
        get_account,
        get_account_in,
        list_accounts,
    )
    from ledger.store.export import ExportResult, export_bundle
    from ledger.store.group import (
        Group,
        GroupCommitter,
        GroupStats,
        LedgerBusy,
        committer_for,
        submit_grouped,
        submit_grouped_async,
    )
    from ledger.store.joined import JoinedBatch, lock_in, submit_batches_in, submit_in
    from ledger.store.log import (
        StoredCheckpoint,
        audit_log,
        current_checkpoint,
        make_checkpoint,
        prove_consistency,
        prove_inclusion,
    )
    from ledger.store.period import PeriodLines, period_lines
    from ledger.store.reads import get_failure, get_transfer, log_size
    from ledger.store.reconcile import (
        ReconcileOutcome,
        StoredDiscrepancy,
        correct_discrepancy,
        list_discrepancies,
        reconcile_with_partner,
        record_dispute,
        record_reconciliation,
        summary_for_partner,
        transfers_of_trade,
    )
    from ledger.store.writer import expire_due, submit, submit_batches
    from ledger.verify import VerifyReport, verify_bundle, verify_chain

# Each public name and the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "Checkpoint": "ledger.checkpoint",
    "parse_checkpoint": "ledger.checkpoint",
    "sign_checkpoint": "ledger.checkpoint",
    "verify_checkpoint": "ledger.checkpoint",
    "AuditError": "ledger.errors",
    "ConflictError": "ledger.errors",
    "LedgerError": "ledger.errors",
    "NotFoundError": "ledger.errors",
    "ProofError": "ledger.errors",
    "ReconcileError": "ledger.errors",
    "RequestError": "ledger.errors",
    "StorageError": "ledger.errors",
    "checkpoint_job": "ledger.jobs",
    "origin_for": "ledger.jobs",
    "sweep_job": "ledger.jobs",
    "Discrepancy": "ledger.reconcile",
    "DiscrepancyKind": "ledger.reconcile",
    "Summary": "ledger.reconcile",
    "Window": "ledger.reconcile",
    "build_summary": "ledger.reconcile",
    "diff_summaries": "ledger.reconcile",
    "parse_summary": "ledger.reconcile",
    "render_report": "ledger.reconcile",
    "Account": "ledger.records",
    "AccountKind": "ledger.records",
    "AccountResult": "ledger.records",
    "AccountSpec": "ledger.records",
    "Balance": "ledger.records",
    "CORRECTION_CODE": "ledger.records",
    "Status": "ledger.records",
    "Transfer": "ledger.records",
    "TransferKind": "ledger.records",
    "TransferRequest": "ledger.records",
    "TransferResult": "ledger.records",
    "close_account": "ledger.store.accounts",
    "create_accounts": "ledger.store.accounts",
    "get_account": "ledger.store.accounts",
    "get_account_in": "ledger.store.accounts",
    "list_accounts": "ledger.store.accounts",
    "ExportResult": "ledger.store.export",
    "export_bundle": "ledger.store.export",
    "Group": "ledger.store.group",
    "GroupCommitter": "ledger.store.group",
    "GroupStats": "ledger.store.group",
    "LedgerBusy": "ledger.store.group",
    "committer_for": "ledger.store.group",
    "submit_grouped": "ledger.store.group",
    "submit_grouped_async": "ledger.store.group",
    "JoinedBatch": "ledger.store.joined",
    "lock_in": "ledger.store.joined",
    "submit_batches_in": "ledger.store.joined",
    "submit_in": "ledger.store.joined",
    "StoredCheckpoint": "ledger.store.log",
    "audit_log": "ledger.store.log",
    "current_checkpoint": "ledger.store.log",
    "make_checkpoint": "ledger.store.log",
    "prove_consistency": "ledger.store.log",
    "prove_inclusion": "ledger.store.log",
    "StatementReport": "ledger.statement_verify",
    "verify_statement": "ledger.statement_verify",
    "PeriodLines": "ledger.store.period",
    "period_lines": "ledger.store.period",
    "get_failure": "ledger.store.reads",
    "get_transfer": "ledger.store.reads",
    "log_size": "ledger.store.reads",
    "ReconcileOutcome": "ledger.store.reconcile",
    "StoredDiscrepancy": "ledger.store.reconcile",
    "correct_discrepancy": "ledger.store.reconcile",
    "list_discrepancies": "ledger.store.reconcile",
    "reconcile_with_partner": "ledger.store.reconcile",
    "record_dispute": "ledger.store.reconcile",
    "record_reconciliation": "ledger.store.reconcile",
    "summary_for_partner": "ledger.store.reconcile",
    "transfers_of_trade": "ledger.store.reconcile",
    "expire_due": "ledger.store.writer",
    "submit": "ledger.store.writer",
    "submit_batches": "ledger.store.writer",
    "VerifyReport": "ledger.verify",
    "verify_bundle": "ledger.verify",
    "verify_chain": "ledger.verify",
}

__all__ = [
    "CORRECTION_CODE",
    "Account",
    "AccountKind",
    "AccountResult",
    "AccountSpec",
    "AuditError",
    "Balance",
    "Checkpoint",
    "ConflictError",
    "Discrepancy",
    "DiscrepancyKind",
    "ExportResult",
    "Group",
    "GroupCommitter",
    "GroupStats",
    "JoinedBatch",
    "LedgerBusy",
    "LedgerError",
    "NotFoundError",
    "PeriodLines",
    "ProofError",
    "ReconcileError",
    "ReconcileOutcome",
    "RequestError",
    "StatementReport",
    "Status",
    "StorageError",
    "StoredCheckpoint",
    "StoredDiscrepancy",
    "Summary",
    "Transfer",
    "TransferKind",
    "TransferRequest",
    "TransferResult",
    "VerifyReport",
    "Window",
    "audit_log",
    "build_summary",
    "checkpoint_job",
    "close_account",
    "committer_for",
    "correct_discrepancy",
    "create_accounts",
    "current_checkpoint",
    "diff_summaries",
    "expire_due",
    "export_bundle",
    "get_account",
    "get_account_in",
    "get_failure",
    "get_transfer",
    "list_accounts",
    "list_discrepancies",
    "lock_in",
    "log_size",
    "make_checkpoint",
    "origin_for",
    "parse_checkpoint",
    "parse_summary",
    "period_lines",
    "prove_consistency",
    "prove_inclusion",
    "reconcile_with_partner",
    "record_dispute",
    "record_reconciliation",
    "render_report",
    "sign_checkpoint",
    "submit",
    "submit_batches",
    "submit_batches_in",
    "submit_grouped",
    "submit_grouped_async",
    "submit_in",
    "summary_for_partner",
    "sweep_job",
    "transfers_of_trade",
    "verify_bundle",
    "verify_chain",
    "verify_checkpoint",
    "verify_statement",
]


def __getattr__(name: str) -> Any:
    """The public `name`, imported from its submodule on first use and kept as a module global."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Module globals and the names not loaded yet."""
    return sorted({*globals(), *_EXPORTS})
