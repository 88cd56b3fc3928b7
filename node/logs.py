"""Logging setup: one line per event on stderr, as text for people or JSON for machines; and
rate limits for errors that come in storms (`RateLimiter`, `LoopErrorLog`)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any

ERROR_LOG_INTERVAL_S = 10.0
"""How often one kind of repeated event-loop error is logged at most."""

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ts (UTC), level, logger, msg, plus any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line."""
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-11-29T10:00:00.000Z INFO cpnode.access GET /healthz 200 0.4ms`."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a text line."""
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        line = f"{ts} {record.levelname} {record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


ACCESS_LOGGER = "cpnode.access"


def log_access(enabled: bool) -> None:
    """Log one line per request (`cpnode.access`) or none: a node behind a proxy that logs them
    saves the formatting and the write of every request's line."""
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET if enabled else logging.CRITICAL)


def configure_logging(fmt: str = "text", level: str = "info", access: bool = True) -> None:
    """Send `cpnode.*` logs to stderr in `fmt` ("text" or "json") at `level`; `access`: a line per
    request (`log_access`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("cpnode").setLevel(level.upper())
    log_access(access)
    # Neither format shows where a record was logged from, nor its thread or process: records skip
    # looking them up (a walk up the stack per record, on the event loop).
    logging._srcfile = None  # the logging HOWTO's "Optimization"
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class RateLimiter:
    """Lets one event per key through per interval and counts the ones it holds back."""

    def __init__(
        self, interval_s: float = ERROR_LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def admit(self, key: Hashable) -> int | None:
        """None when an event of `key` was let through less than an interval ago (it is counted);
        otherwise how many were held back since the last one let through."""
        now = self._clock()
        if now < self._next.get(key, now):
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._next[key] = now + self.interval_s
        return self._held.pop(key, 0)


def _error_key(context: dict[str, Any]) -> Hashable:
    exc = context.get("exception")
    if exc is None:
        return ("message", str(context.get("message", ""))[:80])
    return (type(exc).__name__, getattr(exc, "errno", None), str(exc)[:200])


class LoopErrorLog:
    """An asyncio exception handler that logs each kind of error at most once per interval.

    Under file-descriptor exhaustion asyncio reports every failed accept ("socket.accept() out of
    system resource", EMFILE "Too many open files"), up to a backlog's worth per wake-up, and its
    retry timers fail again after the server closes; logged one by one that fills a disk. Here
    errors of one kind (exception type, errno and text) are logged once per interval, with how
    many were held back since, by the loop's default handler.
    """

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        self.limiter = limiter or RateLimiter()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Log `context` unless one like it was logged less than an interval ago."""
        held = self.limiter.admit(_error_key(context))
        if held is None:
            return
        if held:
            context = {
                **context,
                "message": f"{context.get('message', '')} "
                f"({held} similar errors not logged in the last {self.limiter.interval_s:g} s)",
            }
        loop.default_exception_handler(context)
