"""The ledger component of the node: config section, scheduled jobs, admin API, status lines."""
