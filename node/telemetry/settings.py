"""Config section of business metrics: `[metrics]` (see node.config).

[metrics]
business = true   # add pools, trades, partners, tasks and migrations to /metrics, read from the database
cache_s = 5       # how long one reading of the database serves scrapes (a scrape storm reads it once)
pool_sample_every_s = 60  # the scheduler samples each pool's units in use this often (the console's chart)
pool_samples_keep_h = 48  # and keeps the samples this long
"""

from __future__ import annotations

from pydantic import Field

from node.config_fields import ConfigSection


class MetricsSection(ConfigSection):
    """`[metrics]`: whether /metrics carries business metrics, how long one reading is kept, and how
    often pools' utilisation is sampled and how long the samples are kept."""

    business: bool = True
    cache_s: float = Field(default=5.0, ge=0, le=300)
    pool_sample_every_s: float = Field(default=60.0, ge=1, le=3600)
    pool_samples_keep_h: int = Field(default=48, ge=1, le=24 * 366)
