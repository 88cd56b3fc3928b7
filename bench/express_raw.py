"""The baseline of `python -m bench express`: a raw two-hop socket relay, source → relay →
destination, plain sockets, no hashing, no HTTP, each hop its own process.

    python -m bench.express_raw destination FILE     # listens, prints its port, writes what arrives
    python -m bench.express_raw relay DEST_PORT      # listens, prints its port, forwards one stream
    python -m bench.express_raw source RELAY_PORT FILE  # sends the file (sendfile), prints its start time

Times are CLOCK_MONOTONIC, shared by every process on the host: the source prints when it started
sending, the destination when the last byte was written (no fsync: the bare cost of moving bytes).
"""

from __future__ import annotations

import os
import socket
import sys
import time

BLOCK = 1 << 20


def _listen() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    print(server.getsockname()[1], flush=True)
    return server


def destination(path: str) -> None:
    """Accept one connection and write everything it sends to `path`."""
    server = _listen()
    connection, _ = server.accept()
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    total = 0
    with open(path, "wb", buffering=0) as handle:
        while got := connection.recv_into(buffer):
            handle.write(view[:got])
            total += got
    print(f"done {total} {time.monotonic()}", flush=True)


def relay(destination_port: int) -> None:
    """Accept one connection and forward everything it sends to the destination."""
    server = _listen()
    incoming, _ = server.accept()
    outgoing = socket.create_connection(("127.0.0.1", destination_port))
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    while got := incoming.recv_into(buffer):
        outgoing.sendall(view[:got])
    outgoing.shutdown(socket.SHUT_WR)
    outgoing.close()


def source(relay_port: int, path: str) -> None:
    """Send the file to the relay."""
    connection = socket.create_connection(("127.0.0.1", relay_port))
    started = time.monotonic()
    with open(path, "rb") as handle:
        connection.sendfile(handle)
    connection.shutdown(socket.SHUT_WR)
    connection.close()
    print(f"started {started}", flush=True)


def main(argv: list[str]) -> None:
    """Run one role."""
    role = argv[0]
    if role == "destination":
        destination(argv[1])
    elif role == "relay":
        relay(int(argv[1]))
    elif role == "source":
        source(int(argv[1]), argv[2])
    else:
        raise SystemExit(f"unknown role {role!r}")
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
