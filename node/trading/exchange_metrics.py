"""The buyer's trade exchanges as Prometheus counters: trade requests sent to partners, and the
HTTP exchanges that carried them, a request alone (`single`) or several together (`batch`).

Read from the batcher's own counts (`node.trading.batching.Counts`) at each scrape, so a trade
costs nothing more. The requests per exchange show how well concurrent orders share exchanges:
at load, a share of singles near the exchanges' total means orders are going one by one."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from node.trading.batching import Counts


class ExchangeCounts(Collector):
    """`cpnode_trade_requests_sent_total` and `cpnode_trade_exchanges_total{kind}` of `counts`."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        """The two counters, as the batcher counts them now."""
        counts = self.counts
        sent = CounterMetricFamily(
            "cpnode_trade_requests_sent", "Trade requests this node sent to partners as a buyer."
        )
        sent.add_metric([], counts.requests)
        exchanges = CounterMetricFamily(
            "cpnode_trade_exchanges",
            "HTTP exchanges that carried trade requests to partners: one request alone (single) or "
            "several (batch).",
            labels=["kind"],
        )
        exchanges.add_metric(["single"], counts.exchanges - counts.batches)
        exchanges.add_metric(["batch"], counts.batches)
        yield sent
        yield exchanges
