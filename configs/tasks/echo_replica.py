"""A replica of an inference service, for tests and the demo: a small HTTP server (standard library
only) that answers who it is. Not a model server: it stands in for one.

It listens on 127.0.0.1 (port $PORT, or any free one), then prints `cpnode-endpoint URL` on its log
so the node finds it. It answers:

    GET  /healthz          200 "ok" (503 after POST /sick)
    GET  /{anything}       JSON {"replica", "service", "pid", "path", "query", "headers"}; ?delay_ms=N waits
                           N ms first (a busy or slow replica)
    GET  /stream?chunks=N&delay_ms=M   N chunks of `chunk i\n`, M ms apart (chunked encoding)
    POST /{anything}       JSON {"replica", "bytes", "sha256"} of the body, read as it streams
    POST /sick, /well      make the health check fail or pass again
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

REPLICA = os.environ.get("CPNODE_REPLICA", "replica")
SERVICE = os.environ.get("CPNODE_SERVICE", "")
STATE = {"sick": False}


class Handler(BaseHTTPRequestHandler):
    """One request."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the log is for the endpoint line."""

    def _json(self, status: int, data: dict[str, object]) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Health, stream, or who answers."""
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/healthz":
            status = 503 if STATE["sick"] else 200
            body = b"sick" if STATE["sick"] else b"ok"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        delay_s = int(query.get("delay_ms", "0")) / 1000
        if url.path == "/stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(int(query.get("chunks", "3"))):
                data = f"chunk {i}\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                time.sleep(delay_s)
            self.wfile.write(b"0\r\n\r\n")
            return
        if delay_s:
            time.sleep(delay_s)
        info = {
            "replica": REPLICA,
            "service": SERVICE,
            "pid": os.getpid(),
            "path": url.path,
            "query": url.query,
            "headers": dict(self.headers.items()),
        }
        self._json(200, info)

    def do_POST(self) -> None:
        """Sick/well switches, or the digest of the body as it streams in."""
        if self.path in ("/sick", "/well"):
            STATE["sick"] = self.path == "/sick"
            self._json(200, {"replica": REPLICA, "sick": STATE["sick"]})
            return
        digest, size = hashlib.sha256(), 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while (length := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                block = self.rfile.read(length)
                digest.update(block)
                size += len(block)
                self.rfile.readline()
            self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left > 0:
                block = self.rfile.read(min(left, 65536))
                if not block:
                    break
                digest.update(block)
                size += len(block)
                left -= len(block)
        self._json(200, {"replica": REPLICA, "bytes": size, "sha256": digest.hexdigest()})


class Server(ThreadingHTTPServer):
    """A thread per connection; a listen backlog for bursts (the standard library's is 5)."""

    request_queue_size = 128
    daemon_threads = True


def main() -> None:
    """Serve until killed."""
    server = Server(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler)
    print(f"cpnode-endpoint http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
