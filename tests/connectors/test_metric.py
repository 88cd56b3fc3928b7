"""The unified compute metric: the chip catalogue and its sources, and the score formulas."""

from __future__ import annotations

import pytest

from connectors.contract import Flavor, Measurement, Usage
from connectors.errors import MetricError
from connectors.metric import (
    REFERENCE_CHIP,
    WEIGHTS,
    chip_score,
    composite_score,
    dynamic_score,
    load_chips,
    milli,
    parse_chips,
    static_score,
)

REQUIRED_CHIPS = {
    "nvidia-a100",
    "nvidia-h100",
    "nvidia-h200",
    "nvidia-h20",
    "nvidia-l40s",
    "nvidia-rtx-4090",
    "huawei-ascend-910b",
    "cambricon-mlu370",
    "hygon-dcu",
    "kunlunxin-2",
}


def test_catalogue_has_every_market_chip_with_a_source_for_each_value() -> None:
    """All ten chips are present, and every numeric value names a public URL."""
    chips = load_chips()
    assert set(chips) >= REQUIRED_CHIPS
    for spec in chips.values():
        for name in spec.values:
            assert spec.sources[name].startswith(("https://", "http://")), (spec.key, name)


def test_reference_chip_scores_one_and_faster_chips_score_more() -> None:
    """A100 = 1.0 exactly; H100 and H200 score above it, H200 above H100 (more memory and bandwidth)."""
    assert chip_score(REFERENCE_CHIP) == 1.0
    assert milli(chip_score(REFERENCE_CHIP)) == 1000
    assert chip_score("nvidia-h200") > chip_score("nvidia-h100") > chip_score("nvidia-a100")
    assert chip_score("nvidia-a100") > chip_score("hygon-dcu")


def test_missing_values_renormalise_instead_of_counting_as_zero() -> None:
    """A chip with a value left out is scored over the values it has (weights renormalised)."""
    chips = load_chips()
    spec = chips["huawei-ascend-910b"]
    assert "fp32_tflops" not in spec.values
    ref = chips[REFERENCE_CHIP].values
    present = [n for n in WEIGHTS if n in spec.values]
    expected = sum(WEIGHTS[n] * spec.values[n] / ref[n] for n in present) / sum(WEIGHTS[n] for n in present)
    assert chip_score("huawei-ascend-910b") == pytest.approx(expected)


def test_catalogue_without_a_source_is_refused() -> None:
    """A value without a source URL makes the whole catalogue invalid."""
    data = {
        "chip": [
            {
                "key": "nvidia-a100",
                "stack": "cuda",
                **{n: 1.0 for n in WEIGHTS},
                "sources": {n: "https://x" for n in WEIGHTS},
            },
            {"key": "x", "stack": "cuda", "fp16_tflops": 5.0, "sources": {}},
        ]
    }
    with pytest.raises(MetricError, match="no public source"):
        parse_chips(data)


def test_flavor_static_score_is_chips_times_chip_score() -> None:
    """An 8-GPU flavor scores eight chips."""
    flavor = Flavor(id="f", chip_model="nvidia-h100", chips=8, cpus=96, memory_mib=1024, storage_gib=1)
    assert static_score(flavor) == pytest.approx(8 * chip_score("nvidia-h100"))


def test_cpu_flavor_is_scored_from_the_measurement() -> None:
    """A CPU-only flavor's score grows with the measured throughput and its share of the host."""
    measured = Measurement(matmul_gflops=200, memory_gbps=20, host_cpus=4, measured_ms=0, duration_ms=1)
    faster = measured.model_copy(update={"matmul_gflops": 400})
    one = Flavor(id="a", chip_model="cpu", chips=0, cpus=1, memory_mib=1024, storage_gib=1)
    two = one.model_copy(update={"cpus": 2})
    assert 0 < static_score(one, measured) < static_score(two, measured) < static_score(two, faster)
    with pytest.raises(MetricError, match="measurement"):
        static_score(one, None)


def test_dynamic_and_composite_scores() -> None:
    """Idle regions score 1, saturated ones 0; composite keeps half the static score at worst."""
    idle = Usage(
        region_id="r", cpu_utilisation_permille=0, free_memory_permille=1000, free_network_mbps=100_000
    )
    busy = Usage(region_id="r", cpu_utilisation_permille=1000, free_memory_permille=0, free_network_mbps=0)
    assert dynamic_score(idle) == 1.0
    assert dynamic_score(busy) == 0.0
    assert dynamic_score(None) == 1.0
    assert composite_score(4.0, 1.0) == 4.0
    assert composite_score(4.0, 0.0) == 2.0
    with pytest.raises(MetricError):
        composite_score(1.0, 1.5)


def test_unknown_chip_is_an_error() -> None:
    """Scoring a chip the catalogue lacks fails with the known keys listed."""
    with pytest.raises(MetricError, match="nvidia-a100"):
        chip_score("acme-9000")
