"""`[network]`: how the node keeps its network view fresh.

```toml
[network]
refresh_s = 30              # the scheduler re-reads every network plugin's topology this often
site = "beijing"            # this node's own site: where measured round trips to partners start
measure_partners = true     # measure round trips to partners whose offers declare no site
measure_timeout_s = 2.0
```
"""

from __future__ import annotations

from pydantic import Field

from node.config_fields import ConfigSection


class NetworkSection(ConfigSection):
    """`[network]`: the view's refresh interval, this node's site, partner round-trip measurement."""

    refresh_s: float = Field(default=30.0, gt=0, le=86_400)
    site: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
    measure_partners: bool = True
    measure_timeout_s: float = Field(default=2.0, gt=0, le=60)
