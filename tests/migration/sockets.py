"""How many bytes processes move over TCP, measured from outside: `ss` sampled every 0.1 s, each
socket's bytes sent + received (the kernel's tcp_info) attributed to the process that owns it.

A socket's count is its latest sample minus what it had when the meter started (sockets opened
later start from zero), so only traffic during the measurement counts. A connection opened and
closed between two samples is missed; moving megabytes takes longer than that on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping

_USERS = re.compile(r"pid=(\d+),")
_SENT = re.compile(r"\bbytes_sent:(\d+)")
_RECEIVED = re.compile(r"\bbytes_received:(\d+)")


def parse_ss(text: str) -> dict[tuple[int, str, str], int]:
    """(pid, local, peer) → bytes sent + received, from `ss -tinpH` output (a socket's line, then an
    indented line of its tcp_info when it has one)."""
    found: dict[tuple[int, str, str], int] = {}
    head: str | None = None
    for line in [*text.splitlines(), ""]:
        if line[:1].isspace() and head is not None:
            parts = head.split("users:")[0].split()  # ... local-address:port peer-address:port
            sent, received = _SENT.search(line), _RECEIVED.search(line)
            total = (int(sent.group(1)) if sent else 0) + (int(received.group(1)) if received else 0)
            if len(parts) >= 2:
                for pid in _USERS.findall(head):
                    found[(int(pid), parts[-2], parts[-1])] = total
            head = None
        else:
            head = line
    return found


class SocketMeter:
    """Bytes over TCP of named processes while the meter runs."""

    def __init__(
        self, pids: Mapping[str, int], every_s: float = 0.1, ignore_ports: frozenset[int] = frozenset()
    ) -> None:
        self.pids = dict(pids)
        self.ignore_ports = ignore_ports  # connections to these peer ports (a database) do not count
        self.every_s = every_s
        self.baseline: dict[tuple[int, str, str], int] = {}
        self.latest: dict[tuple[int, str, str], int] = {}
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> dict[tuple[int, str, str], int]:
        process = await asyncio.create_subprocess_exec(
            "ss", "-tinpH", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            out, _ = await process.communicate()
        except asyncio.CancelledError:  # stopped mid-sample: `ss` is reaped here, not left to the collector
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        wanted = set(self.pids.values())
        return {
            key: value
            for key, value in parse_ss(out.decode()).items()
            if key[0] in wanted and int(key[2].rsplit(":", 1)[1]) not in self.ignore_ports
        }

    async def start(self) -> None:
        """Take the baseline and sample in the background."""
        self.baseline = await self._sample()
        self.latest = dict(self.baseline)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for key, value in (await self._sample()).items():
                self.latest[key] = max(value, self.latest.get(key, 0))
            await asyncio.sleep(self.every_s)

    async def stop(self) -> dict[str, int]:
        """Stop sampling (after a last sample); bytes moved by each named process."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for key, value in (await self._sample()).items():
            self.latest[key] = max(value, self.latest.get(key, 0))
        moved = dict.fromkeys(self.pids, 0)
        for name, pid in self.pids.items():
            for key, value in self.latest.items():
                if key[0] == pid:
                    moved[name] += value - self.baseline.get(key, 0)
        return moved
