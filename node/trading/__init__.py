"""Trading and settlement between nodes: orders placed here (buyer side), sales to partners (seller
side), the signed documents between them, capacity reservations, and both ledgers' records.

Public surface: `component` (install, status_lines), `settings.TradingSection`, `buyer.Buyer`,
`seller.Seller`, `peer.fetch_summary` (reconciliation over the peer API), `rules` (chart of
accounts), `machine` (the order and sale state machines).
"""
