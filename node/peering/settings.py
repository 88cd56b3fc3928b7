"""Config sections of federation: `[federation]`, `[[partners]]`, `[[issuers]]` and `[[offers]]`
(see node.config). `[[issuers]]` are nodes whose catalogs this node accepts when an aggregator
partner relays them (federation.relay), each pinned by name and public key.

`[[offers]]` are the node's own offers until the connectors provide them; each entry has the
fields of a catalog offer (federation.catalog.OFFER_FIELDS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ConfigDict, Field, field_validator

from federation.errors import FederationError
from node.config_fields import ConfigSection, NodeName, NodeUrl, PublicKey
from node.config_fields import check_public_key as check_public_key  # re-exported: its old home

# The federation modules that check values (keys, URLs, offers) load the crypto and HTTP-signature
# libraries: they are imported by the validators that use them, so reading a config without
# partners or offers (and every `--help`) stays light.
if TYPE_CHECKING:
    from federation.partners import Partner
    from federation.relay import Issuer
    from federation.service import FederationSettings
    from node.offers import CatalogOffer


class FederationSection(ConfigSection):
    """`[federation]`: catalog sync, limits, discovery and the partner-address allow-list."""

    sync_interval_s: float = Field(default=60.0, ge=1, le=86_400)
    catalog_validity_s: int = Field(default=3600, ge=60, le=86_400)
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    partner_timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_request_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    max_catalog_bytes: int = Field(default=16 * 1_048_576, ge=1024, le=1024 * 1_048_576)
    max_catalog_offers: int = Field(default=20_000, ge=1, le=1_000_000)
    # A partner platform places its many consumers' orders at once: one trade at a time would
    # bound what it can buy from us by one round trip per trade.
    max_trades_in_flight: int = Field(default=32, ge=1, le=1000)
    trade_claim_ttl_s: int = Field(default=30, ge=3, le=3600)
    max_trade_items: int = Field(default=100, ge=1, le=10_000)
    key_refetch_interval_s: int = Field(default=60, ge=1, le=86_400)
    key_document_max_keys: int = Field(default=64, ge=1, le=1024)
    backoff_base_s: int = Field(default=5, ge=1, le=3600)
    backoff_max_s: int = Field(default=900, ge=1, le=86_400)
    discovery: bool = False
    allow_networks: list[str] = Field(default_factory=list)

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        if not value:
            return value
        from federation.partners import parse_allow_list

        try:
            parse_allow_list(value)
        except FederationError as exc:
            raise ValueError(str(exc)) from None
        return value

    def protocol_settings(self) -> FederationSettings:
        """The plain settings object the federation package takes."""
        from federation.catalog import CatalogLimits
        from federation.partners import parse_allow_list
        from federation.service import FederationSettings

        return FederationSettings(
            sync_interval_s=self.sync_interval_s,
            catalog_validity_s=self.catalog_validity_s,
            limits=CatalogLimits(max_bytes=self.max_catalog_bytes, max_offers=self.max_catalog_offers),
            max_request_bytes=self.max_request_bytes,
            request_timeout_s=self.request_timeout_s,
            partner_timeout_s=self.partner_timeout_s,
            key_refetch_interval_s=self.key_refetch_interval_s,
            key_document_max_keys=self.key_document_max_keys,
            max_trades_in_flight=self.max_trades_in_flight,
            trade_claim_ttl_s=self.trade_claim_ttl_s,
            max_trade_items=self.max_trade_items,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            allow_networks=parse_allow_list(self.allow_networks),
        )


class PartnerSection(ConfigSection):
    """One `[[partners]]` entry: a partner pinned in the config, with its agreement."""

    name: NodeName
    urls: list[NodeUrl] = Field(min_length=1, max_length=8)
    key: PublicKey
    pools: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    price_list: dict[str, int] = Field(default_factory=dict)
    markup_bp: int = 0
    credit_limit: int = Field(default=0, ge=0)
    currency: str = "CNY"
    # The star case (federation.relay): may the partner re-publish our catalog; which partners'
    # re-publishable catalogs it may fetch through us (`*`: all).
    republish: bool = False
    relay: list[str] = Field(default_factory=list)

    def partner(self) -> Partner:
        """The partner this entry pins (agreement checked; raises ValueError if inconsistent)."""
        from federation.partners import Agreement, Partner

        try:
            agreement = Agreement.from_json(
                self.model_dump(
                    include={
                        "pools",
                        "tags",
                        "price_list",
                        "markup_bp",
                        "credit_limit",
                        "currency",
                        "republish",
                        "relay",
                    }
                )
            )
        except FederationError as exc:
            raise ValueError(str(exc)) from None
        return Partner(self.name, tuple(self.urls), self.key, agreement, source="config")


class IssuerSection(ConfigSection):
    """One `[[issuers]]` entry: a node whose catalogs are accepted when an aggregator relays them."""

    name: NodeName
    key: PublicKey

    def issuer(self) -> Issuer:
        """The trusted issuer this entry pins."""
        from federation.relay import Issuer

        return Issuer(self.name, self.key, source="config")


class OfferSection(ConfigSection):
    """One `[[offers]]` entry: an offer this node sells (until connectors provide them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    pool: str
    region: str
    chip_vendor: str
    chip_model: str
    chips_per_unit: int = Field(ge=0)
    cpus: int = Field(ge=0)
    memory_mib: int = Field(ge=0)
    storage_gib: int = Field(ge=0)
    free_units: int = Field(ge=0)
    price_per_unit_hour: int = Field(ge=0)
    currency: str = "CNY"
    networks: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    compute_id: str | None = None
    metric_score: int | None = Field(default=None, ge=0)
    # Offers naming one capacity_group share its capacity_free (in capacity_unit); each unit of this
    # offer takes capacity_cost of it (node.offers).
    capacity_group: str | None = None
    capacity_unit: str | None = None
    capacity_cost: int | None = Field(default=None, ge=1)
    capacity_free: int | None = Field(default=None, ge=0)

    def offer(self) -> CatalogOffer:
        """The offer as it appears in catalogs."""
        from node.offers import as_offer

        try:
            return as_offer(self.model_dump(exclude_none=True))
        except FederationError as exc:
            raise ValueError(str(exc)) from None
