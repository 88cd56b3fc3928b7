"""The threads an engine's blocking calls run on, sized to its connection pool.

`asyncio.to_thread` uses the event loop's default executor: min(32, cores + 4) threads (6 on two
cores), shared by every engine of the process and by whatever else hops to a thread. A thread
waiting on the database (its write lock, a commit's fsync, a free pooled connection) holds one of
those few, so reads queue behind writes and one node's work behind another's. Each engine gets its
own threads instead, as many as it has connections (`pool_size` + `max_overflow`) unless
configured (`[database] threads`): more could only wait for a connection.

The threads travel with the engine as an execution option (`THREADS_OPTION`), so the federation
package finds them by name without importing node (as it finds the write lock). They end when the
engine is disposed, and start again if it is used after that.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine

THREADS_OPTION = "cpnode_threads"
T = TypeVar("T")
P = ParamSpec("P")


class EngineThreads:
    """A thread pool of `size` threads, started on first use and ended by `close`."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an engine needs at least one thread, not {size}")
        self.size = size
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def executor(self) -> ThreadPoolExecutor:
        """The running pool (started now if there is none)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="cpnode-db")
            return self._pool

    def close(self) -> None:
        """End the threads once their work is done (a later call starts new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


def attach_threads(engine: Engine, size: int) -> EngineThreads:
    """Give `engine` its own `size` threads, ended when it is disposed."""
    threads = EngineThreads(size)
    engine.update_execution_options(**{THREADS_OPTION: threads})
    event.listen(engine, "engine_disposed", lambda _engine: threads.close())
    return threads


def threads_of(engine: Engine) -> EngineThreads | None:
    """The engine's own threads, or None (the event loop's default executor is used then)."""
    found = engine.get_execution_options().get(THREADS_OPTION)
    return found if isinstance(found, EngineThreads) else None


async def in_thread(
    engine: Engine, fn: Callable[Concatenate[Engine, P], T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run the blocking call `fn(engine, ...)` on the engine's threads (with the caller's context
    variables, as `asyncio.to_thread` does)."""
    threads = threads_of(engine)
    call = functools.partial(contextvars.copy_context().run, fn, engine, *args, **kwargs)
    executor = None if threads is None else threads.executor()
    return await asyncio.get_running_loop().run_in_executor(executor, call)
