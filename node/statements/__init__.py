"""Billing statements: issued per consumer and partner account for a closed UTC month, signed,
numbered without gaps, stored once and never changed (`node.statements.store`), shown as JSON, CSV
and a printable HTML page (`node.statements.render`), served at `/api/v1/statements`
(`node.statements.routes`). Statement building and verification are `ledger.statement*`."""
