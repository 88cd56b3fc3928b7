"""Fixtures for connectors tests: simulators as real processes, and helpers to wait without sleeping blindly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sims import (
    BIN,
    CONFIGS,
    SimProcess,
    cloudsim,
)


@pytest.fixture(name="alpha_sim")
def fixture_alpha_sim(tmp_path: Path) -> Iterator[SimProcess]:
    """A running cloudsim speaking the alpha dialect."""
    sim = cloudsim("alpha", tmp_path)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(name="beta_sim")
def fixture_beta_sim(tmp_path: Path) -> Iterator[SimProcess]:
    """A running cloudsim speaking the beta dialect."""
    sim = cloudsim("beta", tmp_path)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(name="netsim")
def fixture_netsim() -> Iterator[SimProcess]:
    """A running network controller simulator with the shipped topology."""
    sim = SimProcess([str(BIN / "cpnode-netsim"), "--config", str(CONFIGS / "network" / "default.toml")])
    sim.start()
    yield sim
    sim.stop()
