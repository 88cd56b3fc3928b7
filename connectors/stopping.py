"""Stopping background tasks: cancel them and wait until each has ended, cancelling again while one
goes on. The node's components stop theirs with it directly, and so do
the connectors' servers and runners: it lives here because connectors may not import node.

A cancellation can be lost in a call that finished at that very moment (the standard library's
`asyncio.wait_for` before Python 3.12 returns the result instead of raising), and a loop that lost
it runs on; awaited once, it would hold the node's stop forever. Waiting here also never takes a
cancellation of the caller's own: a stop that is itself cancelled ends as cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("cpnode.stopping")
AGAIN_AFTER_S = 1.0
"""How long a cancelled task may take to end before it is cancelled again."""


async def stop_tasks(
    tasks: Sequence[asyncio.Task[Any]], what: str, again_after_s: float = AGAIN_AFTER_S
) -> None:
    """Cancel `tasks` (`what` names them in the log) and wait until each has ended, cancelling it
    again every `again_after_s` while it goes on; an error one ended with is logged."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        while not task.done():
            await asyncio.wait([task], timeout=again_after_s)
            if not task.done():
                log.warning("%s went on after it was cancelled; cancelling it again", what)
                task.cancel()
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s ended with %r", what, task.exception())
