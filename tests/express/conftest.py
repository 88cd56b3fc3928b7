"""Real processes for data-express tests: storage endpoints (`cpnode-storage`) and `cpnode express`,
all on 127.0.0.1, plus files of random bytes and a way to read a process's peak memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from connectors.express import ExpressClient
from tests.support.express import (
    ExpressProcess,
    Storage,
)


@pytest.fixture(name="source")
def fixture_source(tmp_path: Path) -> Iterator[Storage]:
    """A running source storage endpoint."""
    storage = Storage(tmp_path / "source", "source")
    storage.start()
    yield storage
    storage.stop()


@pytest.fixture(name="destination")
def fixture_destination(tmp_path: Path) -> Iterator[Storage]:
    """A running destination storage endpoint."""
    storage = Storage(tmp_path / "destination", "destination")
    storage.start()
    yield storage
    storage.stop()


@pytest.fixture(name="express")
def fixture_express(tmp_path: Path) -> Iterator[ExpressProcess]:
    """A running `cpnode express` process."""
    process = ExpressProcess(tmp_path / "express")
    process.start()
    yield process
    process.stop()


@pytest.fixture(name="client")
async def fixture_client(express: ExpressProcess) -> AsyncIterator[ExpressClient]:
    """A client of the express process's control API."""
    async with express.client() as client:
        yield client
