"""A token bucket for the relay's bandwidth cap, adjustable while a transfer runs.

Tokens are bytes, refilled at `rate_bytes_per_s` up to a burst of a tenth of a second's worth (at
least one slice), so over any window of T seconds at most rate·T + burst bytes pass. Senders take
tokens in slices (`slice_bytes`, small enough that the cap is smooth at low rates). A rate of 0
means no cap. Changing the rate applies to the next slice every sender takes (without a cap, a
slice is a whole chunk).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

MAX_SLICE_BYTES = 256 << 10
MIN_SLICE_BYTES = 4 << 10
# No pacing to smooth: a chunk (at most 64 MiB) goes in one piece, e.g. one hand-off to the thread
# that splices it instead of one per MiB. A cap set meanwhile applies from each sender's next chunk.
UNCAPPED_SLICE_BYTES = 64 << 20
BURST_S = 0.1
_POLL_S = 0.05  # a waiting sender looks again at least this often, so a raised cap applies at once


class TokenBucket:
    """Bytes-per-second tokens; `clock` is injectable for tests."""

    def __init__(self, rate_bytes_per_s: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stamp = clock()
        self._tokens = 0.0
        self.rate_bytes_per_s = 0
        self.set_rate(rate_bytes_per_s)

    @property
    def slice_bytes(self) -> int:
        """How many bytes a sender takes at a time: about 1/20 s at the current rate, 4–256 KiB (a
        whole chunk without a cap)."""
        if not self.rate_bytes_per_s:
            return UNCAPPED_SLICE_BYTES
        return max(MIN_SLICE_BYTES, min(MAX_SLICE_BYTES, self.rate_bytes_per_s // 20))

    @property
    def burst_bytes(self) -> int:
        """The most tokens the bucket holds."""
        if not self.rate_bytes_per_s:
            return 0
        return max(self.slice_bytes, int(self.rate_bytes_per_s * BURST_S))

    def set_rate(self, rate_bytes_per_s: int) -> None:
        """Change the cap (0: none), keeping the tokens earned so far (up to the new burst)."""
        if rate_bytes_per_s < 0:
            raise ValueError("a rate cap cannot be negative")
        self._refill()
        self.rate_bytes_per_s = rate_bytes_per_s
        self._tokens = min(self._tokens, float(self.burst_bytes))

    def _refill(self) -> None:
        now = self._clock()
        if self.rate_bytes_per_s:
            earned = (now - self._stamp) * self.rate_bytes_per_s
            self._tokens = min(float(self.burst_bytes), self._tokens + earned)
        self._stamp = now

    def try_take(self, nbytes: int) -> float:
        """Take `nbytes` tokens and return 0, or take nothing and return the seconds to wait first."""
        if not self.rate_bytes_per_s:
            return 0.0
        self._refill()
        if self._tokens >= nbytes:
            self._tokens -= nbytes
            return 0.0
        return (nbytes - self._tokens) / self.rate_bytes_per_s

    async def take(self, nbytes: int) -> None:
        """Wait until `nbytes` tokens were taken (in parts of at most a burst each)."""
        while nbytes > 0:
            part = min(nbytes, self.burst_bytes) if self.rate_bytes_per_s else nbytes
            while (wait_s := self.try_take(part)) > 0:
                await asyncio.sleep(min(wait_s, _POLL_S))
                part = min(part, self.burst_bytes) if self.rate_bytes_per_s else part
            nbytes -= part
