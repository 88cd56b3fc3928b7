"""The ledger's tables as SQLAlchemy Core objects (created by migrations ledger_0001 to ledger_0005).

Money columns are BIGINT minor units; times are UTC epoch milliseconds (`_ms`). An account's spec
and lifecycle live in `ledger_accounts`; its four running totals in a row of `ledger_balances`
that holds nothing else, found by the number the account names (`num`; on SQLite the rowid itself,
which VACUUM never renumbers): the write path rewrites that row, every batch, for every account it
touches, so the narrower the row the fewer pages each commit writes. The append-only tables
(transfers, failures, checkpoints) are guarded by triggers that refuse UPDATE and DELETE on both
backends; `ledger_transfers.pending_id` is unique, so a hold resolves at most once even if code
were wrong. `ledger_head` is the one row writers lock to hand out dense sequence numbers.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite makes an INTEGER PRIMARY KEY the rowid (no second index); PostgreSQL needs BIGINT.
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

accounts = sa.Table(
    "ledger_accounts",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("debits_must_not_exceed_credits", sa.Boolean, nullable=False),
    sa.Column("credits_must_not_exceed_debits", sa.Boolean, nullable=False),
    sa.Column("partner", sa.String(128), nullable=True),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("closed_seq", sa.BigInteger, nullable=True),
    sa.Column("closed_ms", sa.BigInteger, nullable=True),
    sa.Column("num", sa.BigInteger, nullable=False, unique=True),  # its ledger_balances row
)

# One row per account, created with it; never deleted.
balances = sa.Table(
    "ledger_balances",
    metadata,
    sa.Column("num", SEQ, primary_key=True, autoincrement=False),
    sa.Column("debits_pending", sa.BigInteger, nullable=False),
    sa.Column("debits_posted", sa.BigInteger, nullable=False),
    sa.Column("credits_pending", sa.BigInteger, nullable=False),
    sa.Column("credits_posted", sa.BigInteger, nullable=False),
)
BALANCE_COLUMNS = (
    balances.c.debits_pending,
    balances.c.debits_posted,
    balances.c.credits_pending,
    balances.c.credits_posted,
)

transfers = sa.Table(
    "ledger_transfers",
    metadata,
    sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
    sa.Column("id", sa.String(160), nullable=False, unique=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("debit_account", sa.String(128), nullable=False),
    sa.Column("credit_account", sa.String(128), nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("pending_id", sa.String(160), nullable=True, unique=True),
    sa.Column("pending_amount", sa.BigInteger, nullable=True),
    sa.Column("timeout_s", sa.BigInteger, nullable=True),
    sa.Column("expires_ms", sa.BigInteger, nullable=True),
    sa.Column("code", sa.Integer, nullable=False),
    sa.Column("linked", sa.Boolean, nullable=False),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
    sa.Column("order_id", sa.String(128), nullable=True),
    sa.Column("trade_id", sa.String(128), nullable=True),
    sa.Column("partner", sa.String(128), nullable=True),
    sa.Column("trade_digest", sa.String(128), nullable=True),
)

TRANSFER_COLUMNS: tuple[str, ...] = tuple(column.name for column in transfers.columns)

failures = sa.Table(
    "ledger_failures",
    metadata,
    sa.Column("id", sa.String(160), primary_key=True),
    sa.Column("status", sa.String(48), nullable=False),
    sa.Column("field", sa.String(32), nullable=True),
    sa.Column("ts_ms", sa.BigInteger, nullable=False),
)

head = sa.Table(
    "ledger_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next_seq", sa.BigInteger, nullable=False),
    sa.Column("last_ts_ms", sa.BigInteger, nullable=False),
    sa.Column("swept_ms", sa.BigInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

checkpoints = sa.Table(
    "ledger_checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("time_ms", sa.BigInteger, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("frontier", sa.Text, nullable=False),  # JSON list of base64 hashes of [0, size)
)

# Hashes of the perfect aligned subtrees of 2^level leaves, level ≥ ledger.store.tree.TILE_LEVEL:
# node (level, idx) covers seq [idx·2^level, (idx+1)·2^level). Derived from the transfers, written with
# each checkpoint, append-only like them; proofs read O(log n) of these instead of every leaf.
tree_nodes = sa.Table(
    "ledger_tree_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

discrepancies = sa.Table(
    "ledger_discrepancies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("partner", sa.String(128), nullable=False),
    sa.Column("window_from_ms", sa.BigInteger, nullable=False),
    sa.Column("window_to_ms", sa.BigInteger, nullable=False),
    sa.Column("trade_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("ours", sa.Text, nullable=True),
    sa.Column("theirs", sa.Text, nullable=True),
    sa.Column("found_ms", sa.BigInteger, nullable=False),
    sa.Column("correction_id", sa.String(160), nullable=True),
    sa.UniqueConstraint("partner", "window_from_ms", "window_to_ms", "trade_id", "kind"),
)

reconciliations = sa.Table(
    "ledger_reconciliations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("partner", sa.String(128), nullable=False),
    sa.Column("window_from_ms", sa.BigInteger, nullable=False),
    sa.Column("window_to_ms", sa.BigInteger, nullable=False),
    sa.Column("ran_ms", sa.BigInteger, nullable=False),
    sa.Column("our_trades", sa.Integer, nullable=False),
    sa.Column("their_trades", sa.Integer, nullable=False),
    sa.Column("discrepancies", sa.Integer, nullable=False),
    sa.Column("our_summary_sha256", sa.String(64), nullable=False),
    sa.Column("their_summary_sha256", sa.String(64), nullable=False),
)
