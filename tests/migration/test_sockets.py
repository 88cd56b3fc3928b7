"""The socket meter reads `ss` as it prints: a socket's line (with or without its state column), then
its tcp_info; sockets without one or without an owner are skipped."""

from __future__ import annotations

from tests.migration.sockets import parse_ss

SAMPLE = """ESTAB 0 0 127.0.0.1:40153 127.0.0.1:33138 users:(("python3",pid=24629,fd=28))
\t bbr wscale:10,10 bytes_sent:581 bytes_acked:581 bytes_received:997314 segs_out:13
TIME-WAIT 0 0 127.0.0.1:50000 127.0.0.1:8700
ESTAB 0 0 127.0.0.1:42497 127.0.0.1:52288 users:(("python3",pid=32656,fd=8),("python3",pid=32657,fd=8))
\t cubic bytes_sent:1049840 bytes_acked:1049840 bytes_received:976
0 0 127.0.0.1:1 127.0.0.1:2 users:(("x",pid=7,fd=3))
\t cubic bytes_received:10
"""


def test_parse_ss_attributes_bytes_to_owning_processes() -> None:
    """Bytes sent plus received per (pid, local, peer); a socket shared by two processes counts for each."""
    assert parse_ss(SAMPLE) == {
        (24629, "127.0.0.1:40153", "127.0.0.1:33138"): 581 + 997314,
        (32656, "127.0.0.1:42497", "127.0.0.1:52288"): 1049840 + 976,
        (32657, "127.0.0.1:42497", "127.0.0.1:52288"): 1049840 + 976,
        (7, "127.0.0.1:1", "127.0.0.1:2"): 10,
    }
