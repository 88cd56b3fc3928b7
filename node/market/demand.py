"""A consumer's demand: what it needs, stated once, checked whole before anything is matched.

`parse_demand` takes the JSON object of `POST /api/v1/match` (or the `demand` of an order) and
returns a frozen `Demand`, or raises `DemandError` naming the first bad field (`units`,
`regions.1`, ...). Money is integer minor units; sizes carry their unit in the name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from connectors.frameworks import check_framework
from node.market.errors import DemandError
from node.trading.rules import MAX_HOURS, MAX_UNITS

Objective = Literal["cost", "performance", "value"]
# A site of the network view (connectors.network.contract.Name, or a partner's `node:NAME`).
SiteName = Annotated[str, Field(pattern=r"^(node:)?[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")]
# A strategy by name (`nearest`, a registered name) or by name and version (`edge-first@2`).
StrategyRef = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}(@[1-9][0-9]{0,8})?$")]
MAX_LIST = 64
# Offer fields are strings of 1–200 characters (federation.catalog.check_offer).
Text = Annotated[str, Field(min_length=1, max_length=200)]
# A source entry: `own`, `partner`, `own:NAME`, `partner:NAME`, or a partner's bare name.
SourceEntry = Annotated[
    str, Field(pattern=r"^((own|partner)(:[A-Za-z0-9][A-Za-z0-9._-]{0,79})?|[a-z0-9][a-z0-9-]{0,62})$")
]


class UserSite(BaseModel):
    """A site the consumer's users reach the work from, and its share of their traffic (a weight)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: SiteName
    weight: StrictInt = Field(default=1, ge=1, le=10**6)


class DataSpec(BaseModel):
    """Where the task's input data lives and how big it is (co-scheduling moves it to the compute)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: SiteName
    size_mb: StrictInt = Field(ge=0, le=10**9)


class Demand(BaseModel):
    """What a consumer needs: size, hardware floors, where, at what price, ranked by which objective."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    units: StrictInt = Field(ge=1, le=MAX_UNITS)
    hours: StrictInt = Field(ge=1, le=MAX_HOURS)
    chip_vendor: Text | None = None
    chip_model: Text | None = None
    min_chips_per_unit: StrictInt | None = Field(default=None, ge=0)
    min_cpus: StrictInt | None = Field(default=None, ge=0)
    min_memory_mib: StrictInt | None = Field(default=None, ge=0)
    min_storage_gib: StrictInt | None = Field(default=None, ge=0)
    regions: tuple[Text, ...] | None = Field(default=None, min_length=1, max_length=MAX_LIST)
    tags: tuple[Text, ...] = Field(default=(), max_length=MAX_LIST)
    max_price_per_unit_hour: StrictInt | None = Field(default=None, ge=1)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    min_metric_score: StrictInt | None = Field(default=None, ge=0)
    # A partner's offer counts only if a sync round found its catalog current at most this long ago.
    max_age_s: StrictInt | None = Field(default=None, ge=0, le=366 * 24 * 3600)
    sources: tuple[SourceEntry, ...] | None = Field(default=None, min_length=1, max_length=MAX_LIST)
    objective: Objective = "cost"
    split: StrictBool = False
    # A framework the demand's program needs (`pytorch>=2.4`): offers whose chip has no image of it
    # are left out (`no_framework_image`).
    framework: Annotated[Text, AfterValidator(check_framework)] | None = None
    # Scheduling (node.market.strategies): the strategy that ranks the offers instead of
    # `objective`, the users' sites (nearest, composite), a latency bound, the data to bring
    # (co-schedule) and the run time on an offer of metric score 1000 (co-schedule).
    strategy: StrategyRef | None = None
    user_sites: tuple[UserSite, ...] | None = Field(default=None, min_length=1, max_length=MAX_LIST)
    max_latency_ms: StrictInt | None = Field(default=None, ge=0, le=10**6)
    data: DataSpec | None = None
    compute_s: StrictInt | None = Field(default=None, ge=1, le=10**9)

    def allows_source(self, source: str, partner: str | None) -> bool:
        """Whether an offer from `source` (`own:NAME` / `partner:NAME`) is one the demand accepts."""
        if self.sources is None:
            return True
        kind = source.split(":", 1)[0]
        return any(
            entry in (kind, source) or (partner is not None and entry == partner) for entry in self.sources
        )


def parse_demand(data: Any) -> Demand:
    """A `Demand` from a JSON value; `DemandError` naming the first bad field otherwise."""
    if not isinstance(data, dict):
        raise DemandError("demand", "must be a JSON object")
    try:
        return Demand.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "demand"
        raise DemandError(where, str(first["msg"])) from None
