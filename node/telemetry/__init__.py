"""Business metrics in /metrics: pools, trades and revenue, partners, tasks and migrations, read
from the database (so every replica answers the same) and cached for a few seconds.

`readings` holds what one reading says and `families` turns it into Prometheus families (both
pure); `queries` reads it from the database; `collector` caches it and serves scrapes;
`component.install` is wired in node.components.
"""
