"""ledger: account balances move to a narrow table of their own, keyed by an integer.

Every batch rewrites the balance row of every account it touches. In `ledger_accounts` that row
also carried the spec and lifecycle columns (SQLite rebuilds the whole record on UPDATE and found
it by the text key); in `ledger_balances` it is five integers and an id, found by an integer key
(on SQLite the rowid, which VACUUM never renumbers). Balances are copied over unchanged and the
non-negative check moves with them.

Revision ID: ledger_0002
Revises: ledger_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TOTALS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
NON_NEGATIVE = " AND ".join(f"{column} >= 0" for column in TOTALS)
SPEC_COLUMNS = (
    "id",
    "currency",
    "kind",
    "debits_must_not_exceed_credits",
    "credits_must_not_exceed_debits",
    "partner",
    "created_ms",
    "closed_seq",
    "closed_ms",
)


def _account_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debits_must_not_exceed_credits", sa.Boolean, nullable=False),
        sa.Column("credits_must_not_exceed_debits", sa.Boolean, nullable=False),
        sa.Column("partner", sa.String(128), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("closed_seq", sa.BigInteger, nullable=True),
        sa.Column("closed_ms", sa.BigInteger, nullable=True),
    ]


def _total_columns() -> list[sa.Column[object]]:
    return [sa.Column(column, sa.BigInteger, nullable=False) for column in TOTALS]


def _rebuild_sqlite_accounts(
    extra: list[sa.Column[object]], copy_select: str, *args: sa.schema.SchemaItem
) -> None:
    """SQLite cannot drop or add checked columns in place: build the new table, copy, swap."""
    op.create_table("ledger_accounts_new", *_account_columns(), *extra, *args)
    columns = ", ".join((*SPEC_COLUMNS, *(column.name for column in extra)))
    op.execute(f"INSERT INTO ledger_accounts_new ({columns}) {copy_select}")
    op.drop_table("ledger_accounts")
    op.rename_table("ledger_accounts_new", "ledger_accounts")


def upgrade() -> None:
    """Create ledger_balances from the accounts' totals, then drop those columns from ledger_accounts."""
    op.create_table(
        "ledger_balances",
        sa.Column("num", SEQ, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(128), nullable=False),
        *_total_columns(),
        sa.UniqueConstraint("account_id", name="uq_ledger_balances_account_id"),
        sa.CheckConstraint(NON_NEGATIVE, name="ck_ledger_balances_non_negative"),
    )
    totals = ", ".join(TOTALS)
    op.execute(
        f"INSERT INTO ledger_balances (account_id, {totals}) "  # noqa: S608 - constants
        f"SELECT id, {totals} FROM ledger_accounts ORDER BY id"
    )
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_accounts([], f"SELECT {', '.join(SPEC_COLUMNS)} FROM ledger_accounts")  # noqa: S608
    else:
        op.drop_constraint("ck_ledger_accounts_non_negative", "ledger_accounts", type_="check")
        for column in TOTALS:
            op.drop_column("ledger_accounts", column)


def downgrade() -> None:
    """Put the totals back into ledger_accounts and drop ledger_balances."""
    check = sa.CheckConstraint(NON_NEGATIVE, name="ck_ledger_accounts_non_negative")
    copy = (
        f"SELECT {', '.join(f'a.{column}' for column in SPEC_COLUMNS)}, "  # noqa: S608 - constants
        f"{', '.join(f'b.{column}' for column in TOTALS)} "
        "FROM ledger_accounts AS a JOIN ledger_balances AS b ON b.account_id = a.id"
    )
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_accounts(_total_columns(), copy, check)
    else:
        for column in TOTALS:
            op.add_column(
                "ledger_accounts", sa.Column(column, sa.BigInteger, nullable=False, server_default="0")
            )
        op.execute(
            "UPDATE ledger_accounts AS a SET "  # noqa: S608 - constants
            + ", ".join(f"{column} = b.{column}" for column in TOTALS)
            + " FROM ledger_balances AS b WHERE b.account_id = a.id"
        )
        for column in TOTALS:
            op.alter_column("ledger_accounts", column, server_default=None)
        op.create_check_constraint("ck_ledger_accounts_non_negative", "ledger_accounts", NON_NEGATIVE)
    op.drop_table("ledger_balances")
