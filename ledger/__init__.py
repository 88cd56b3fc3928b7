"""Settlement ledger: double-entry accounts, idempotent transfers, two-phase holds, a Merkle log
with signed checkpoints, audit bundles and reconciliation. Never imports `node`, `federation` or
`connectors`: the node hands it an SQLAlchemy engine and its Ed25519 key as plain values.

Pure core: records, validation, rules, holds, balances, merkle, checkpoint, bundle, verify,
reconcile. Storage edge (SQLAlchemy Core on a given Engine): ledger.store.*.
"""

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
from ledger.store.accounts import close_account, create_accounts, get_account, list_accounts
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
from ledger.store.log import (
    StoredCheckpoint,
    audit_log,
    current_checkpoint,
    make_checkpoint,
    prove_consistency,
    prove_inclusion,
)
from ledger.store.reads import get_failure, get_transfer, log_size
from ledger.store.reconcile import (
    ReconcileOutcome,
    StoredDiscrepancy,
    correct_discrepancy,
    list_discrepancies,
    reconcile_with_partner,
    record_reconciliation,
    summary_for_partner,
    transfers_of_trade,
)
from ledger.store.writer import expire_due, submit, submit_batches
from ledger.verify import VerifyReport, verify_bundle, verify_chain

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
    "LedgerBusy",
    "LedgerError",
    "NotFoundError",
    "ProofError",
    "ReconcileError",
    "ReconcileOutcome",
    "RequestError",
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
    "get_failure",
    "get_transfer",
    "list_accounts",
    "list_discrepancies",
    "log_size",
    "make_checkpoint",
    "origin_for",
    "parse_checkpoint",
    "parse_summary",
    "prove_consistency",
    "prove_inclusion",
    "reconcile_with_partner",
    "record_reconciliation",
    "render_report",
    "sign_checkpoint",
    "submit",
    "submit_batches",
    "submit_grouped",
    "submit_grouped_async",
    "summary_for_partner",
    "sweep_job",
    "transfers_of_trade",
    "verify_bundle",
    "verify_chain",
    "verify_checkpoint",
]
