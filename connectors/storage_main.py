"""`cpnode-storage`: a standalone storage endpoint serving the directories under a root as buckets.

    cpnode-storage --root DIR --token-file FILE [--host 127.0.0.1] [--port 0] [--create-buckets]

Each subdirectory of DIR is a bucket (`--create-buckets` creates one on its first use). The token
file holds the bearer token (created, mode 0600, if missing). Prints `listening at URL` once
serving. SIGXFSZ is ignored, so a process file-size limit (RLIMIT_FSIZE) makes writes fail with
EFBIG, answered as `disk_full`, instead of killing the server.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from pathlib import Path

from connectors.serving import read_or_create_token, wait_for_signal
from connectors.storage import BucketResolver, StorageServer, StorageService

_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,120}$")


def bucket_resolver(root: Path, create: bool) -> BucketResolver:
    """Bucket name → `root/name` (made on first use if `create`), or None."""

    def resolve(name: str) -> Path | None:
        if not _BUCKET.fullmatch(name) or name.startswith("."):
            return None
        path = root / name
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path if path.is_dir() else None

    return resolve


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="cpnode-storage", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="directory whose subdirectories are buckets")
    parser.add_argument("--token-file", type=Path, required=True, help="file holding the bearer token")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--create-buckets", action="store_true", help="create a bucket on its first use")
    parser.add_argument("--max-object-bytes", type=int, default=64 << 30)
    parser.add_argument(
        "--body-timeout", type=float, default=60.0, help="seconds a chunk body may send nothing (default 60)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    args.root.mkdir(parents=True, exist_ok=True)
    resolve = bucket_resolver(args.root, args.create_buckets)
    try:
        token = read_or_create_token(args.token_file, "cpnode-storage")
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if args.body_timeout <= 0:
        raise SystemExit("--body-timeout must be positive")
    server = StorageServer(
        StorageService(token, resolve, args.max_object_bytes), args.host, args.port, args.body_timeout
    )
    asyncio.run(_serve(server))


async def _serve(server: StorageServer) -> None:
    print(f"cpnode-storage listening at {await server.start()}", flush=True)
    try:
        await wait_for_signal()
    finally:
        await server.close()


if __name__ == "__main__":
    main()
