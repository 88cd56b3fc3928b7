"""Strategy management (调度管理): strategies registered by name and version with their parameters,
A/B splits of a strategy's versions by consumer, and reports comparing versions on real orders.

Pure core: `ab` (the split's stable hash, confidence intervals). Edges: `store` (registry, the
orders each strategy chose and their outcomes), `component` (`/api/v1/strategies`)."""
