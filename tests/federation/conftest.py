"""Federation test helpers: real nodes on loopback that trust each other, and a scripted fake peer
with its own Ed25519 key that plays the attacker (signs, tampers, replays, serves bad documents)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.federation import (
    FakePeer,
)


@pytest.fixture(name="fake_peer")
async def fixture_fake_peer() -> AsyncIterator[FakePeer]:
    """A started fake peer on loopback."""
    peer = FakePeer()
    await peer.start()
    yield peer
    await peer.stop()
