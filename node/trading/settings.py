"""Config section of trading: `[trading]` (see node.config).

[trading]
currency = "CNY"          # the currency this node trades and keeps its trading accounts in
platform_fee_bp = 0       # this node's fee on what it sells, in basis points (500 = 5 %)
trade_timeout_s = 20      # how long a buyer keeps trying to get the seller's answer
settle_grace_s = 86400    # how long after the ordered hours a hold stays open for settlement
recover_every_s = 10      # how often unfinished orders and lapsed sales are picked up again
max_batch_trades = 32     # trade requests to one partner sent together at most (1: one by one)
trade_exchanges = 1       # exchanges in flight to one partner; requests arriving meanwhile batch
accept_trade_batches = true  # take partners' trade batches (false: answer 404, one by one)
"""

from __future__ import annotations

from pydantic import Field

from node.config_fields import ConfigSection


class TradingSection(ConfigSection):
    """`[trading]`: currency, platform fee, time limits of the trade protocol."""

    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    platform_fee_bp: int = Field(default=0, ge=0, le=10_000)
    trade_timeout_s: float = Field(default=20.0, gt=0, le=600)
    settle_grace_s: int = Field(default=86_400, ge=60, le=90 * 86_400)
    recover_every_s: float = Field(default=10.0, gt=0, le=3_600)
    max_batch_trades: int = Field(default=32, ge=1, le=64)
    trade_exchanges: int = Field(default=1, ge=1, le=64)
    accept_trade_batches: bool = True
