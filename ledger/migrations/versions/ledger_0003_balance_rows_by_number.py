"""ledger: a balance row holds only its number and the four totals; the account names its number.

After ledger_0002 each balance row still carried the account's text id (and a unique index on
it). Rewritten every batch for every account touched, the row is narrower without it: more rows
per page, so fewer pages written per commit, and less to decode and encode per update. The link
moves to `ledger_accounts.num` (unique), which is written once, when the account is created.

Revision ID: ledger_0003
Revises: ledger_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0003"
down_revision = "ledger_0002"
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


def _balance_columns() -> list[sa.Column[object]]:
    return [sa.Column(column, sa.BigInteger, nullable=False) for column in TOTALS]


def _swap(table: str, select: str, *items: sa.schema.SchemaItem) -> None:
    """SQLite: build `table` anew from `select` (its columns in `items` order), drop the old one."""
    op.create_table(f"{table}_new", *items)
    op.execute(f"INSERT INTO {table}_new {select}")
    op.drop_table(table)
    op.rename_table(f"{table}_new", table)


def upgrade() -> None:
    """Move the link between an account and its balance row from ledger_balances to ledger_accounts."""
    specs = ", ".join(f"a.{column}" for column in SPEC_COLUMNS)
    totals = ", ".join(TOTALS)
    if op.get_bind().dialect.name == "sqlite":
        _swap(
            "ledger_accounts",
            f"SELECT {specs}, b.num FROM ledger_accounts AS a JOIN ledger_balances AS b ON b.account_id = a.id",  # noqa: S608
            *_account_columns(),
            sa.Column("num", sa.BigInteger, nullable=False),
            sa.UniqueConstraint("num", name="uq_ledger_accounts_num"),
        )
        _swap(
            "ledger_balances",
            f"SELECT num, {totals} FROM ledger_balances",  # noqa: S608
            sa.Column("num", SEQ, primary_key=True, autoincrement=False),
            *_balance_columns(),
            sa.CheckConstraint(NON_NEGATIVE, name="ck_ledger_balances_non_negative"),
        )
        return
    op.add_column("ledger_accounts", sa.Column("num", sa.BigInteger, nullable=True))
    op.execute(
        "UPDATE ledger_accounts AS a SET num = b.num FROM ledger_balances AS b WHERE b.account_id = a.id"
    )
    op.alter_column("ledger_accounts", "num", nullable=False)
    op.create_unique_constraint("uq_ledger_accounts_num", "ledger_accounts", ["num"])
    op.drop_column("ledger_balances", "account_id")


def downgrade() -> None:
    """Put the account id back on each balance row and drop ledger_accounts.num."""
    specs = ", ".join(f"a.{column}" for column in SPEC_COLUMNS)
    totals = ", ".join(f"b.{column}" for column in TOTALS)
    if op.get_bind().dialect.name == "sqlite":
        _swap(
            "ledger_balances",
            f"SELECT b.num, a.id, {totals} FROM ledger_balances AS b JOIN ledger_accounts AS a ON a.num = b.num",  # noqa: S608
            sa.Column("num", SEQ, primary_key=True, autoincrement=True),
            sa.Column("account_id", sa.String(128), nullable=False),
            *_balance_columns(),
            sa.UniqueConstraint("account_id", name="uq_ledger_balances_account_id"),
            sa.CheckConstraint(NON_NEGATIVE, name="ck_ledger_balances_non_negative"),
        )
        _swap("ledger_accounts", f"SELECT {specs} FROM ledger_accounts AS a", *_account_columns())  # noqa: S608
        return
    op.add_column("ledger_balances", sa.Column("account_id", sa.String(128), nullable=True))
    op.execute(
        "UPDATE ledger_balances AS b SET account_id = a.id FROM ledger_accounts AS a WHERE a.num = b.num"
    )
    op.alter_column("ledger_balances", "account_id", nullable=False)
    op.create_unique_constraint("uq_ledger_balances_account_id", "ledger_balances", ["account_id"])
    op.drop_constraint("uq_ledger_accounts_num", "ledger_accounts", type_="unique")
    op.drop_column("ledger_accounts", "num")
