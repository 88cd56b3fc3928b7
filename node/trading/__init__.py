"""Trading and settlement between nodes: orders placed here (buyer side), sales to partners (seller
side), the signed documents between them, capacity reservations, and both ledgers' records.

Pure core: `rules` (chart of accounts, ids, amounts, fee split), `documents` (build and check the
signed documents), `machine` (the order and sale state machines, one table each). Edges: `books`
(ledger transfers), `store` and `tables` (SQL), `tokens` (consumer tokens, stored as digests),
`peer` (calls to partners), `capacity` (reserved offer views), `seller` and `buyer`/`steps` (the
flows), `routes` (the admin and consumer API), `component` (wiring:
`install(app, ctx)`, `status_lines(settings, engine)`).
"""
