"""The HTTP session of a plugin or client: opened on `open()` or first use, closed for good by `close()`.

A plugin is closed while calls may still be in flight on it: it was replaced by an upgrade, removed,
or its node is stopping. A lazily opened session would open again for such a call and nobody would
close it (aiohttp warns "Unclosed client session" when it is collected, and its connections stay
open until then). After `close()` a call is refused with the owner's own error instead; only an
explicit `open()` (a plugin started again) opens a new session.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp


class LazySession:
    """One `aiohttp.ClientSession` made by `make`; `closed_error()` is raised for a call after `close()`."""

    def __init__(
        self, make: Callable[[], aiohttp.ClientSession], closed_error: Callable[[], Exception]
    ) -> None:
        self._make = make
        self._closed_error = closed_error
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def open(self) -> None:
        """Open the session if it is not open (again after `close()`: an explicit restart)."""
        self._closed = False
        if self._session is None:
            self._session = self._make()

    def get(self) -> aiohttp.ClientSession:
        """The open session, opened on first use; raises `closed_error()` once closed."""
        if self._closed:
            raise self._closed_error()
        if self._session is None:
            self._session = self._make()
        return self._session

    async def close(self) -> None:
        """Close the session; calls from now on are refused until `open()`."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
