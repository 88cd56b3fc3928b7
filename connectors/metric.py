"""Unified compute metric (算力度量): static, dynamic and composite scores, reference chip = 1.0.

Static score of one chip c (weights w sum to 1, over the spec values v the catalogue has for c):

    static(c) = Σ w_v · c.v / ref.v  /  Σ w_v          (v ∈ values present for c)

with w = fp16_tflops 0.45, fp32_tflops 0.15, memory_bandwidth_gbps 0.20, memory_gb 0.10,
interconnect_gbps 0.10 and ref = NVIDIA A100 SXM4 80GB, so static(A100) = 1.0 exactly. A flavor
with n chips scores n · static(c). A CPU-only flavor is scored from the pool's *measured*
matrix-multiply GFLOPS (used for both FP16 and FP32) and memory bandwidth, times the share of the
host the flavor gets, plus its memory; it has no scale-up interconnect.

Dynamic score of a region, from its usage (utilisation u, free memory fraction m, free network
throughput f in Mbit/s, reference 100 Gbit/s), in [0, 1]:

    dynamic = 0.5 · (1 − u) + 0.25 · m + 0.25 · min(1, f / 100000)

A region that reports no usage gets dynamic = 1 (taken at its rated performance).

Composite (what offers carry): composite = static · (0.5 + 0.5 · dynamic) — an idle pool delivers
its rated score; a saturated one about half of it. Scores travel as integers in thousandths
(`*_milli`, 1000 = one reference chip) because signed documents carry no floats.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from connectors.contract import Flavor, Measurement, Usage
from connectors.errors import MetricError

CHIPS_FILE = Path(__file__).with_name("data") / "chips.toml"
REFERENCE_CHIP = "nvidia-a100"
CPU_CHIP = "cpu"
STACKS = ("cuda", "cann", "mlu", "dcu", "xpu")
WEIGHTS: Mapping[str, float] = {
    "fp16_tflops": 0.45,
    "fp32_tflops": 0.15,
    "memory_bandwidth_gbps": 0.20,
    "memory_gb": 0.10,
    "interconnect_gbps": 0.10,
}
REFERENCE_NETWORK_MBPS = 100_000


@dataclass(frozen=True)
class ChipSpec:
    """One accelerator model: its spec values (only those with a public source) and the sources."""

    key: str
    vendor: str
    model: str
    resource: str
    values: Mapping[str, float]
    sources: Mapping[str, str]
    interconnect: str = ""
    note: str = ""
    stack: str = ""
    aliases: tuple[str, ...] = ()


def parse_chips(data: Mapping[str, object]) -> dict[str, ChipSpec]:
    """Validate catalogue data (the TOML's shape) into specs by key, or raise MetricError."""
    chips: dict[str, ChipSpec] = {}
    entries = data.get("chip")
    if not isinstance(entries, list) or not entries:
        raise MetricError("chip catalogue has no [[chip]] entries")
    for entry in entries:
        key = entry.get("key")
        if not isinstance(key, str) or key in chips or key == CPU_CHIP:
            raise MetricError(f"chip key {key!r} is missing, duplicated or reserved")
        values: dict[str, float] = {}
        sources = entry.get("sources", {})
        for name in WEIGHTS:
            if name not in entry:
                continue
            value = entry[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise MetricError(f"chip {key!r}: {name} must be a positive number, got {value!r}")
            source = sources.get(name)
            if not isinstance(source, str) or not source.startswith(("https://", "http://")):
                raise MetricError(f"chip {key!r}: {name} has no public source URL")
            values[name] = float(value)
        if "fp16_tflops" not in values:
            raise MetricError(f"chip {key!r}: fp16_tflops is required")
        stack, aliases = entry.get("stack"), entry.get("aliases", [])
        if stack not in STACKS:
            raise MetricError(f"chip {key!r}: stack must be one of {', '.join(STACKS)}, got {stack!r}")
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise MetricError(f"chip {key!r}: aliases must be a list of names")
        chips[key] = ChipSpec(
            key=key,
            vendor=str(entry.get("vendor", "")),
            model=str(entry.get("model", "")),
            resource=str(entry.get("resource", "GPU")),
            values=values,
            sources=dict(sources),
            interconnect=str(entry.get("interconnect", "")),
            note=str(entry.get("note", "")),
            stack=stack,
            aliases=tuple(aliases),
        )
    if REFERENCE_CHIP not in chips or set(chips[REFERENCE_CHIP].values) != set(WEIGHTS):
        raise MetricError(f"the reference chip {REFERENCE_CHIP!r} must be present with every value")
    return chips


@cache
def load_chips(path: Path = CHIPS_FILE) -> dict[str, ChipSpec]:
    """The chip catalogue shipped with cpnode (read once)."""
    with path.open("rb") as handle:
        return parse_chips(tomllib.load(handle))


def relative_score(values: Mapping[str, float], reference: ChipSpec) -> float:
    """Weighted mean of `values` relative to the reference chip, over the values present."""
    present = [name for name in WEIGHTS if name in values]
    if not present:
        raise MetricError("no spec values to score")
    total_weight = sum(WEIGHTS[name] for name in present)
    return sum(WEIGHTS[n] * values[n] / reference.values[n] for n in present) / total_weight


def chip_score(key: str, chips: Mapping[str, ChipSpec] | None = None) -> float:
    """Static score of one chip of catalogue key `key` (the reference chip scores 1.0)."""
    catalogue = load_chips() if chips is None else chips
    spec = catalogue.get(key)
    if spec is None:
        raise MetricError(f"chip {key!r} is not in the catalogue ({', '.join(sorted(catalogue))})")
    return relative_score(spec.values, catalogue[REFERENCE_CHIP])


def cpu_values(measurement: Measurement, host_share: float, memory_mib: int) -> dict[str, float]:
    """Spec values of a CPU-only flavor from the pool's measurement and the flavor's share of the host."""
    tflops = measurement.matmul_gflops * host_share / 1000
    return {
        "fp16_tflops": tflops,
        "fp32_tflops": tflops,
        "memory_bandwidth_gbps": measurement.memory_gbps * host_share,
        "memory_gb": memory_mib / 1024,
    }


def static_score(flavor: Flavor, measurement: Measurement | None = None) -> float:
    """Static score of a flavor: chips × chip score, or the measured score of a CPU-only flavor."""
    chips = load_chips()
    if flavor.chip_model == CPU_CHIP or flavor.chips == 0:
        if measurement is None:
            raise MetricError(f"flavor {flavor.id!r} is CPU-only and the pool reported no measurement")
        share = min(1.0, flavor.cpus / measurement.host_cpus)
        return relative_score(cpu_values(measurement, share, flavor.memory_mib), chips[REFERENCE_CHIP])
    return flavor.chips * chip_score(flavor.chip_model, chips)


def dynamic_score(usage: Usage | None) -> float:
    """Dynamic score of a region in [0, 1] from utilisation, free memory and free network."""
    if usage is None:
        return 1.0
    network = min(1.0, usage.free_network_mbps / REFERENCE_NETWORK_MBPS)
    return (
        0.5 * (1 - usage.cpu_utilisation_permille / 1000)
        + 0.25 * usage.free_memory_permille / 1000
        + 0.25 * network
    )


def composite_score(static: float, dynamic: float) -> float:
    """Composite score: the static score scaled by how much of it the region can deliver now."""
    if not 0.0 <= dynamic <= 1.0:
        raise MetricError(f"dynamic score must be within [0, 1], got {dynamic}")
    return static * (0.5 + 0.5 * dynamic)


def milli(score: float) -> int:
    """A score as integer thousandths (1000 = one reference chip)."""
    return round(score * 1000)
