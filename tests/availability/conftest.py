"""Fixtures of the availability tests: the shipped architecture files and a brute-force planner."""

from __future__ import annotations

import pytest

from node.availability import Architecture, load_architecture
from tests.support.availability import (
    PAPER_TOML,
)


@pytest.fixture(name="paper")
def fixture_paper() -> Architecture:
    """The paper's 10-module / 24-sub-module architecture as shipped."""
    return load_architecture(PAPER_TOML)
