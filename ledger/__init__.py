"""Settlement ledger: double-entry accounts, idempotent transfers, two-phase holds, a Merkle log
with signed checkpoints, audit bundles and reconciliation. Never imports `node`, `federation` or
`connectors`."""
