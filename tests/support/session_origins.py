"""Where each aiohttp client session was made, so an unclosed-session warning names its origin.

aiohttp warns "Unclosed client session" from the session's finalizer, which may run long after the
code that forgot to close it (in a later test, when a reference cycle is collected) and says only
the object's address; pytest then suggests tracemalloc, which slows the whole suite several times.
`record()` keeps a short creation stack per live session instead (a few per test) and adds it to
that warning.
"""

from __future__ import annotations

import traceback
import warnings
from typing import Any

import aiohttp

_ORIGINS: dict[int, str] = {}
_STACK_LIMIT = 14


def record() -> None:
    """Wrap `aiohttp.ClientSession` so its unclosed-session warning tells where it was created."""
    cls = aiohttp.ClientSession
    if getattr(cls, "_origins_recorded", False):
        return
    init, finalize = cls.__init__, cls.__del__

    def __init__(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        _ORIGINS[id(self)] = "".join(traceback.format_stack(limit=_STACK_LIMIT)[:-1])
        init(self, *args, **kwargs)

    def __del__(self: aiohttp.ClientSession, _warnings: Any = warnings) -> None:
        origin = _ORIGINS.pop(id(self), None)
        if not self.closed and origin is not None:
            _warnings.warn(
                f"Unclosed client session {self!r}, created at:\n{origin}", ResourceWarning, source=self
            )
            return
        finalize(self)

    cls.__init__ = __init__  # type: ignore[method-assign]
    cls.__del__ = __del__  # type: ignore[method-assign]
    cls._origins_recorded = True  # type: ignore[attr-defined]
