"""Supervision reporting (监管): nodes send signed resource reports to the supervisors they are
configured with; a node run with the `supervisor` role accepts them from registered nodes, keeps their
history, answers national totals, and flags nodes whose reports stop or contradict their catalogs.

Modules: `figures` (pool figures from offers, pure), `report` (the signed report document, pure),
`totals` (national totals, staleness and catalog comparison, pure), `settings` (config sections),
`store` (tables and queries), `reporter` (the node's reporting job), `supervisor` (ingest and
catalog checks), `routes` (HTTP), `component` (wiring).
"""
