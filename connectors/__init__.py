"""Interconnection control (互联管控层): compute and network plugins that reach resource pools and
network controllers, plus reference pools and simulators. Never imports `node`, `federation` or
`ledger`."""
