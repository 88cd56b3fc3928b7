"""Loopback ports for processes started later: chosen below the kernel's ephemeral range.

A port taken by binding port 0 comes from the ephemeral range, from which the kernel also picks
the local port of every outgoing connection; between choosing it and the started process binding
it, another connection can take it ("the port is already in use"). Ports just below that range are
never handed out that way, so one free now stays free unless another process chooses it too.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
SPAN = 12_000  # how many ports below the ephemeral range are candidates
LOWEST = 1_024


def candidates() -> range:
    """The ports to choose from: the SPAN ports below the ephemeral range (empty if unknown)."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(max(LOWEST, low - SPAN), low)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct TCP ports on `host` that are free now (below the ephemeral range where the
    kernel says where it is; else ports it hands out for port 0)."""
    pool = candidates()
    chosen: list[int] = []
    rng = random.SystemRandom()
    for _ in range(count * 50 if pool else 0):
        if len(chosen) == count:
            break
        port = rng.choice(pool)
        if port not in chosen and _bindable(host, port):
            chosen.append(port)
    while len(chosen) < count:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if port not in chosen:
            chosen.append(port)
    return chosen


def free_port(host: str = "127.0.0.1") -> int:
    """One TCP port on `host` that is free now (see `free_ports`)."""
    return free_ports(1, host)[0]


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
