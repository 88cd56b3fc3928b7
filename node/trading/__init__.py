"""Trading and settlement between nodes: orders placed here (buyer side), sales to partners (seller
side), the signed documents between them, capacity reservations, and both ledgers' records.

Pure core: `rules` (chart of accounts, ids, amounts, fee split), `records` (orders and sales as
stored), `documents` (build and check the signed documents), `machine` (the order and sale state
machines, one typed table each), `decisions` (the seller's `check_trade` / `check_settlement`, one
`Refusal`), `views` (what the API shows). Edges: `books` (ledger transfers), `store` and `tables`
(SQL), `tokens` (consumer tokens, stored as digests), `peer` (calls to partners), `capacity`
(reserved offer views, per pool region), `seller` and `buyer`/`steps` (the flows), `routes` (the
admin and consumer API), `component` (wiring: `install(app, ctx)`).
"""
