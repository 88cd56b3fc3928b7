"""The one way tests wait for something: poll a condition until it holds or a deadline passes,
never a fixed sleep. `eventually` awaits (the condition may be a coroutine function or a plain
one); `wait_for` blocks, for a thread that watches another. `within` bounds one step (a request,
a stream read) so that a hang fails naming the step instead of running into pytest's timeout."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

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


@asynccontextmanager
async def within(timeout_s: float, what: str) -> AsyncIterator[None]:
    """Run the block, failing with AssertionError naming `what` if it takes over `timeout_s`."""
    bound = asyncio.timeout(timeout_s)
    try:
        async with bound:
            yield
    except TimeoutError:
        if bound.expired():  # not a TimeoutError of the block's own
            raise AssertionError(f"{what} not done within {timeout_s} s") from None
        raise
