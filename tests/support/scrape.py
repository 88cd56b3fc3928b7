"""Read a node's /metrics as a test would query Prometheus: samples by name and labels."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """One scrape of /metrics: every sample, and the metric families named in it."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    families: dict[str, str]  # family name → type

    def value(self, name: str, **labels: str) -> float | None:
        """The sample `name` with exactly these labels, or None when the scrape has none."""
        return self.samples.get((name, frozenset(labels.items())))

    def total(self, name: str, **labels: str) -> float:
        """The sum of every sample `name` whose labels include these (0 when there is none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)


def parse(text: str) -> Scrape:
    """A Prometheus text exposition as a `Scrape`."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    families: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, families)


async def scrape(url: str) -> Scrape:
    """GET `url`/metrics and parse it (the answer must be 200)."""
    async with aiohttp.ClientSession() as http, http.get(url.rstrip("/") + "/metrics") as response:
        assert response.status == 200, await response.text()
        return parse(await response.text())
