"""A cancellation is never lost: a plugin call that ends at the very moment its caller is cancelled
still cancels the caller (the standard library's `asyncio.wait_for` before Python 3.12 returned the
call's result instead), and stopping background tasks cancels one again until it ends,
so a node's stop cannot wait forever on a round that ran on (`connectors.stopping.stop_tasks`, which
every component's stop uses)."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.errors import PluginTimeout
from connectors.stopping import stop_tasks
from connectors.table import PluginTable


async def test_a_cancel_as_a_plugin_call_ends_cancels_the_caller() -> None:
    table = PluginTable()
    call: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(table.guarded("edge", call, timeout_s=5))
    await asyncio.sleep(0)  # the caller now waits for the call
    call.set_result(1)  # the call ends ...
    task.cancel()  # ... as the caller is cancelled (a node stopping mid-round)
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_plugin_call_still_times_out() -> None:
    never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(PluginTimeout, match=r"did not answer within 0\.05 s"):
        await PluginTable().guarded("edge", never, timeout_s=0.05)


async def test_stopping_cancels_a_task_again_until_it_ends() -> None:
    lost: list[int] = []

    async def round_loop() -> None:  # loses its first cancellation, as a round could
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost.append(1)

    tasks = [asyncio.create_task(round_loop()), asyncio.create_task(asyncio.sleep(3600))]
    await asyncio.sleep(0)
    started = time.monotonic()
    await asyncio.wait_for(stop_tasks(tasks, "a round", again_after_s=0.05), 5)
    assert all(task.cancelled() for task in tasks)
    assert lost == [1]
    assert time.monotonic() - started < 2


async def test_a_stop_cancelled_itself_ends_cancelled() -> None:
    """Waiting for the tasks never takes the stopper's own cancellation."""
    slow = asyncio.create_task(asyncio.sleep(3600))

    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # ends only once released: the stop keeps waiting

    loop_task = asyncio.create_task(stubborn())
    stopper = asyncio.create_task(stop_tasks([loop_task, slow], "a round", again_after_s=0.05))
    await asyncio.sleep(0.2)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    released.set()
    loop_task.cancel()
    await asyncio.wait([loop_task], timeout=5)
    assert loop_task.done()
    assert slow.cancelled()


class _SlowClose:
    """A plugin whose close takes a while (its HTTP session closing)."""

    name = "edge"

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        await asyncio.sleep(0.1)
        self.closed = True


async def test_a_plugin_closed_while_its_closer_is_cancelled_still_closes() -> None:
    plugin = _SlowClose()
    closer = asyncio.create_task(PluginTable()._close_plugin(plugin))  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    closer.cancel()  # the node stops while a registration that failed closes its plugin
    with pytest.raises(asyncio.CancelledError):
        await closer
    assert plugin.closed
