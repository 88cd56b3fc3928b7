"""Trading rules with no I/O: the chart of accounts, ids, prices, fee splits and hold deadlines.

Chart of accounts (ledger account ids; one currency per node, `trading.currency`):

| account | kind | flags | what it is |
|---|---|---|---|
| `consumer:<id>` | consumer | no overdraft | a consumer's money; funded by deposits, held by orders |
| `external:deposits` | external | | where deposits come from (money entering the ledger) |
| `escrow:orders` | escrow | | a consumer's money while a partner's trade is open (buyer side) |
| `partner:<node>` | partner | no overdraft | the balance with a partner: credited when we buy from it (payable), debited when it buys from us (receivable) |
| `creditline:<node>` | external | | funds `partner:<node>` with the agreement's credit limit, so the ledger itself refuses a trade beyond it |
| `provider:<pool>` | provider | | what a pool earns |
| `fees:platform` | fees | | this node's platform fee |

Amounts are integer minor units; `units × hours × price per unit-hour` is checked against the
ledger's largest amount before anything is recorded. What an order costs in the end is its metered
usage, prorated to the second and rounded up to the minor unit (`usage_amount`); usage typed by hand
in whole hours is an operator's correction, and its posts carry `CODE_OPERATOR_USAGE`.
"""

from __future__ import annotations

import re
import secrets

from ledger.records import MAX_AMOUNT
from node.trading.errors import OrderRequestError

DEPOSITS = "external:deposits"
ESCROW = "escrow:orders"
FEES = "fees:platform"
CONSUMER_PREFIX = "consumer:"
CONSUMER_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# A trade id is `<buyer node>.<random>`: '.' never occurs in node names, so a partner's trade ids
# can never collide with another partner's, and every ledger transfer id built from one stays short.
TRADE_ID_RE = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)\.([A-Za-z0-9_-]{8,32})")
MAX_UNITS = 1_000_000
MAX_HOURS = 24 * 366

# Ledger transfer codes of trading (ledger codes are 0–65535; 9000 is reserved for corrections).
CODE_DEPOSIT = 100
CODE_ORDER = 200
CODE_SALE = 300
CODE_CREDIT_LINE = 400
CODE_OPERATOR_USAGE = 500  # posts of usage an operator typed by hand (not metered)
SECONDS_PER_HOUR = 3600


def consumer_account(consumer: str) -> str:
    """The ledger account of a consumer."""
    return CONSUMER_PREFIX + consumer


def partner_account(node: str) -> str:
    """The ledger account of a partner node."""
    return f"partner:{node}"


def credit_line_account(node: str) -> str:
    """The account that funds a partner's credit line."""
    return f"creditline:{node}"


def provider_account(pool: str) -> str:
    """The ledger account of a pool."""
    return f"provider:{pool}"


def check_consumer_id(value: object) -> str:
    """`value` if it is a consumer id (1–63 of a–z 0–9 . _ -, starting alphanumeric)."""
    if not isinstance(value, str) or not CONSUMER_ID_RE.fullmatch(value):
        raise OrderRequestError(
            "consumer must be 1–63 of a–z 0–9 . _ - starting with a letter or digit", code="bad_consumer"
        )
    return value


def new_trade_id(node: str) -> str:
    """A fresh order and trade id chosen by this (buying) node."""
    return f"{node}.{secrets.token_hex(12)}"


def check_trade_id(value: object, buyer: str | None = None) -> str:
    """`value` if it is a trade id (of `buyer`, when given); OrderRequestError otherwise."""
    match = TRADE_ID_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise OrderRequestError("an order or trade id looks like NODE.RANDOM (8–32 of A–Z a–z 0–9 _ -)")
    if buyer is not None and match.group(1) != buyer:
        raise OrderRequestError(f"trade ids of {buyer} start with '{buyer}.'", code="foreign_trade_id")
    return str(value)


def positive(name: str, value: object, limit: int) -> int:
    """`value` if it is an integer from 1 to `limit`."""
    if type(value) is not int or not 1 <= value <= limit:
        raise OrderRequestError(f"{name} must be an integer from 1 to {limit}")
    return value


def order_amount(units: int, hours: int, price_per_unit_hour: int) -> int:
    """units × hours × price, refused when it is 0 or beyond the ledger's largest amount."""
    amount = units * hours * price_per_unit_hour
    if not 1 <= amount <= MAX_AMOUNT:
        raise OrderRequestError(
            f"the order's amount {amount} must be between 1 and {MAX_AMOUNT} minor units",
            code="bad_amount",
        )
    return amount


def usage_amount(units: int, hours: int, price_per_unit_hour: int, used_s: int) -> int:
    """What `used_s` seconds of `units` cost at `price_per_unit_hour`: prorated to the second, rounded
    up to the minor unit, never more than the `hours` bought."""
    if not 0 <= used_s <= hours * SECONDS_PER_HOUR:
        raise OrderRequestError(
            f"used_s must be an integer from 0 to {hours * SECONDS_PER_HOUR} (the {hours} hours bought)",
            code="bad_used_s",
        )
    prorated = -(-(units * price_per_unit_hour * used_s) // SECONDS_PER_HOUR)
    return min(prorated, units * hours * price_per_unit_hour)


def hours_covering(used_s: int) -> int:
    """The whole hours that cover `used_s` seconds (what a settlement's `used_hours` says)."""
    return -(-used_s // SECONDS_PER_HOUR)


def fee_of(amount: int, fee_bp: int) -> int:
    """The platform fee on `amount` at `fee_bp` basis points, rounded down."""
    return amount * fee_bp // 10_000


def split_used(used: int, amount: int, fee: int) -> tuple[int, int]:
    """(provider, fee) parts of `used` out of holds of (amount − fee, fee), in the holds' proportion.

    Each part is at most its hold: fee·used/amount rounded down never exceeds the fee, and the
    provider's part exceeds its hold by less than one, so not at all."""
    if not 0 <= used <= amount:
        raise ValueError(f"used {used} is outside 0..{amount}")
    fee_used = fee * used // amount if amount else 0
    return used - fee_used, fee_used


def hold_timeout_s(hours: int, grace_s: int) -> int:
    """A hold lasts the ordered hours plus the settlement grace."""
    return hours * 3600 + grace_s
