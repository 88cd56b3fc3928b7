"""A closed plugin or client never opens its HTTP session again behind the caller's back: a call
still in flight when it is replaced, removed or stopped is refused with the owner's own error, and
no session is left for the garbage collector to warn about (connectors.session)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from connectors.cloudsim.alpha_plugin import AlphaPlugin
from connectors.errors import ConnectorError, PluginOffline
from connectors.express.client import ExpressClient
from connectors.express.errors import ExpressUnavailable
from connectors.network.netsim_plugin import NetsimPlugin
from connectors.remote.client import RemotePlugin
from connectors.session import LazySession

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


class Counted:
    """How many sessions were made through `aiohttp.ClientSession`."""

    made = 0


@pytest.fixture(autouse=True)
def count_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every session made through `aiohttp.ClientSession` is counted."""
    real = aiohttp.ClientSession
    Counted.made = 0

    def counted(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        Counted.made += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(aiohttp, "ClientSession", counted)


async def test_a_lazy_session_opens_once_and_refuses_after_close() -> None:
    """Nothing is opened until used; one session serves every call; a closed one is refused until
    opened again explicitly."""
    lazy = LazySession(lambda: aiohttp.ClientSession(), lambda: PluginOffline("closed"))
    assert Counted.made == 0
    first = lazy.get()
    assert lazy.get() is first
    assert Counted.made == 1
    await lazy.close()
    assert first.closed
    with pytest.raises(PluginOffline, match="closed"):
        lazy.get()
    await lazy.close()  # closing twice is harmless
    assert Counted.made == 1
    lazy.open()
    again = lazy.get()
    assert again is not first
    assert not again.closed
    await lazy.close()
    assert Counted.made == 2


def remote() -> RemotePlugin:
    return RemotePlugin("edge", NOWHERE, "call-token", timeout_s=2)


def alpha() -> AlphaPlugin:
    plugin = AlphaPlugin.from_options("alpha-pool", {"url": NOWHERE, "access_key": "k", "secret_key": "s"})
    assert isinstance(plugin, AlphaPlugin)
    return plugin


def netsim() -> NetsimPlugin:
    return NetsimPlugin("net", NOWHERE, "token", timeout_s=2)


def express() -> ExpressClient:
    return ExpressClient(NOWHERE, "token", timeout_s=2)


Owner = RemotePlugin | AlphaPlugin | NetsimPlugin | ExpressClient
CASES: list[tuple[Callable[[], Owner], type[Exception], type[Exception]]] = [
    (remote, ConnectorError, PluginOffline),
    (alpha, ConnectorError, PluginOffline),
    (netsim, ConnectorError, PluginOffline),
    (express, ExpressUnavailable, ExpressUnavailable),
]


@pytest.mark.parametrize(("make", "unreachable", "closed"), CASES, ids=lambda c: getattr(c, "__name__", ""))
async def test_a_call_after_close_is_refused_without_a_new_session(
    make: Callable[[], Owner], unreachable: type[Exception], closed: type[Exception]
) -> None:
    """Each HTTP-backed plugin and client: a call opens one session (the platform is unreachable:
    the owner's error); after close() the next call is refused at once and opens nothing."""
    owner = make()
    call: Callable[[], Awaitable[object]] = owner.health
    with pytest.raises(unreachable):
        await call()
    assert Counted.made == 1
    await owner.close()
    with pytest.raises(closed, match="closed"):
        await call()
    assert Counted.made == 1
