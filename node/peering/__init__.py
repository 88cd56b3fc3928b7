"""The node's side of federation: config sections, the federation component (peer API, sync job,
discovery), the merged offer view, and the helpers the `keys`, `partners` and `catalog` commands use."""
