"""The one way tests wait for something: poll a condition until it holds or a deadline passes,
never a fixed sleep. `eventually` awaits (the condition may be a coroutine function or a plain
one); `wait_for` blocks, for a thread that watches another."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

INTERVAL_S = 0.02


class Deadline:
    """A deadline `timeout_s` from now; `check` fails the test naming what was awaited."""

    def __init__(self, timeout_s: float, what: str) -> None:
        self.timeout_s = timeout_s
        self.what = what
        self.end = time.monotonic() + timeout_s

    def check(self) -> None:
        """Raise AssertionError once the deadline has passed."""
        if time.monotonic() > self.end:
            raise AssertionError(f"{self.what} not reached within {self.timeout_s} s")


async def eventually(
    check: Callable[[], Awaitable[bool] | bool],
    timeout_s: float = 20.0,
    what: str = "condition",
    interval_s: float = INTERVAL_S,
) -> None:
    """Poll `check` (awaited if it returns an awaitable) until it is true, failing after `timeout_s`."""
    deadline = Deadline(timeout_s, what)
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        deadline.check()
        await asyncio.sleep(interval_s)


def wait_for(
    check: Callable[[], bool],
    timeout_s: float = 20.0,
    what: str = "condition",
    interval_s: float = INTERVAL_S,
) -> None:
    """Poll `check` in this thread until it is true, failing after `timeout_s`."""
    deadline = Deadline(timeout_s, what)
    while not check():
        deadline.check()
        time.sleep(interval_s)
