"""Profiling the one-process cross-node trading run (`python -m bench trading --profile DIR`)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import cProfile
import functools
import pstats
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event

from node.db.engine import WRITE_OPTION


class Profiled:
    """While `watching`: cProfile of the event loop's thread and, apart, of the hops to a database
    thread (`asyncio.to_thread`, `node.db.in_thread`; the ledger's committer thread is in neither),
    both in CPU time; hops by function and transactions begun on each named engine, counted per
    order."""

    def __init__(self, dump: Path, engines: dict[str, Any]) -> None:
        self.dump = dump
        self.engines = engines
        self.hops: collections.Counter[str] = collections.Counter()
        self.begins: collections.Counter[str] = collections.Counter()
        self.writes: collections.Counter[str] = collections.Counter()
        self.waited: dict[str, float] = collections.defaultdict(float)  # seconds queued for a thread
        self.ran: dict[str, float] = collections.defaultdict(float)  # seconds on the thread
        # CPU time of each thread (`time.thread_time`), so a C call's wait for the interpreter lock
        # after it releases it is not counted; one profiler per database thread, merged on dump.
        self.profile = cProfile.Profile(time.thread_time)
        self._threads: list[cProfile.Profile] = []
        self._local = threading.local()
        self._on = False

    def __enter__(self) -> Profiled:
        for name, engine in self.engines.items():
            event.listen(engine, "begin", self._begin(name))
        self._loop = asyncio.get_running_loop()
        plain = self._loop.run_in_executor

        def counted(executor: Any, call: Any, *args: Any) -> Any:
            if not self._on:
                return plain(executor, call, *args)
            # asyncio.to_thread and node.db.in_thread both send partial(context.run, fn, ...)
            fn = call.args[0] if isinstance(call, functools.partial) and call.args else call
            name = getattr(fn, "__qualname__", repr(fn))
            self.hops[name] += 1
            queued = time.perf_counter()

            def timed(*inner: Any) -> Any:
                started = time.perf_counter()
                profile = self._thread_profile()
                profile.enable()
                try:
                    return call(*inner)
                finally:
                    profile.disable()
                    self.waited[name] += started - queued
                    self.ran[name] += time.perf_counter() - started

            return plain(executor, timed, *args)

        self._loop.run_in_executor = counted  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *_exc: object) -> None:
        del self._loop.run_in_executor

    def _thread_profile(self) -> cProfile.Profile:
        """This thread's profiler (CPU time), made on its first hop."""
        profile: cProfile.Profile | None = getattr(self._local, "profile", None)
        if profile is None:
            profile = self._local.profile = cProfile.Profile(time.thread_time)
            self._threads.append(profile)
        return profile

    def _begin(self, name: str) -> Any:
        def begin(connection: Any) -> None:
            if self._on:
                self.begins[name] += 1
                self.writes[name] += bool(connection.get_execution_options().get(WRITE_OPTION))

        return begin

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Profile and count what runs inside."""
        self.dump.parent.mkdir(parents=True, exist_ok=True)
        self._on = True
        self.profile.enable()
        try:
            yield
        finally:
            self.profile.disable()
            self._on = False
            self.profile.dump_stats(self.dump)
            if self._threads:
                threads = pstats.Stats(self._threads[0])
                for profile in self._threads[1:]:
                    threads.add(profile)
                threads.dump_stats(self.dump.with_name(self.dump.stem + "-threads.prof"))

    def per_order(self, orders: int) -> dict[str, Any]:
        """Hops by function, transactions and write transactions by node, each per order."""
        return {
            "hops": round(sum(self.hops.values()) / orders, 2),
            "hops_by_function": {
                k: {
                    "per_order": round(v / orders, 2),
                    "queued_ms": round(1000 * self.waited[k] / v, 2),
                    "ran_ms": round(1000 * self.ran[k] / v, 2),
                }
                for k, v in self.hops.most_common()
            },
            "transactions": {k: round(v / orders, 2) for k, v in self.begins.items()},
            "write_transactions": {k: round(v / orders, 2) for k, v in self.writes.items()},
            "profile": str(self.dump),
        }
