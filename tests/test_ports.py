"""Ports for processes started later: below the ephemeral range, distinct, free."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from node import ports


def test_ports_come_from_below_the_ephemeral_range_distinct_and_free() -> None:
    pool = ports.candidates()
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert pool
    assert pool.stop == low
    chosen = ports.free_ports(20)
    assert len(set(chosen)) == 20
    for port in chosen:
        assert port in pool
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # free: binding it succeeds


def test_a_port_in_use_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        monkeypatch.setattr(ports, "candidates", lambda: range(taken, taken + 1))
        port = ports.free_port()
        assert port != taken  # the only candidate is in use: a port the kernel gives instead


def test_without_the_kernels_range_the_kernel_chooses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports.candidates() == range(0)
    assert len(set(ports.free_ports(3))) == 3
