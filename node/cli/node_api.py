"""Calling a running node's API from the command line (URL from the run file, admin token from keys/,
or a consumer's own token from `--token-file` or $CPNODE_CONSUMER_TOKEN for the commands that take one)."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.cli.common import CliError
from node.runfile import read_admin_token, running_url

if TYPE_CHECKING:
    from node.config import Settings

TIMEOUT_S = 120.0
CONSUMER_TOKEN_ENV = "CPNODE_CONSUMER_TOKEN"  # noqa: S105 - the variable's name, not a token


class NodeRefused(CliError):
    """The node answered with an error: its HTTP status, code and the whole JSON body."""

    def __init__(self, message: str, status: int, code: str | None, body: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body


def node_url(settings: Settings) -> str:
    """The running node's base URL, or a CliError saying it does not run."""
    url = running_url(settings)
    if url is None:
        raise CliError("the node is not running (no data/run.json and port 0); start it with `cpnode run`")
    return url


def add_token_argument(parser: argparse.ArgumentParser) -> None:
    """Add `--token-file PATH`: act as a consumer with its own token instead of the admin token."""
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help=f"act as a consumer: read its token (cpc_...) from PATH instead of using the admin token "
        f"(default: ${CONSUMER_TOKEN_ENV} if set, else the admin token)",
    )


def consumer_token(args: argparse.Namespace) -> str | None:
    """The consumer token named by `--token-file` or $CPNODE_CONSUMER_TOKEN, None for the admin token."""
    path: Path | None = getattr(args, "token_file", None)
    if path is not None:
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(f"cannot read the token file {path}: {exc.strerror}", 2) from None
        if not token:
            raise CliError(f"the token file {path} is empty", 2)
        return token
    return os.environ.get(CONSUMER_TOKEN_ENV, "").strip() or None


def _refusal(method: str, path: str, exc: urllib.error.HTTPError) -> NodeRefused:
    try:
        detail = json.loads(exc.read())
    except ValueError:
        detail = None
    if not isinstance(detail, dict):
        return NodeRefused(f"the node refused {method} {path}: {exc}", exc.code, None, {})
    message = f"{detail.get('error')}: {detail.get('message')}"
    return NodeRefused(f"the node refused {method} {path}: {message}", exc.code, detail.get("error"), detail)


def open_url(
    settings: Settings,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float | None = TIMEOUT_S,
) -> Any:
    """One API call whose answer the caller reads itself (a file, an event stream): the open
    response; a refusal becomes a NodeRefused, an unreachable node a CliError."""
    url = node_url(settings) + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 — the node's own URL
    request.add_header("Authorization", f"Bearer {token or read_admin_token(settings)}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310
    except urllib.error.HTTPError as exc:
        raise _refusal(method, path, exc) from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot reach the node at {url} (is `cpnode run` running?): {exc}") from None


def call(settings: Settings, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    """One API call with the admin token, or with `token` when given; a refusal becomes a CliError
    with the node's error code and message."""
    with open_url(settings, method, path, body, token) as response:
        try:
            return json.loads(response.read() or b"null")
        except OSError as exc:
            raise CliError(f"the node's answer to {method} {path} was cut short: {exc}") from None


def event_stream(
    settings: Settings, path: str, token: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each Server-Sent Event of the node's stream at `path` as (event name, JSON data), until the
    stream ends; a refusal becomes a NodeRefused, an unreachable node a CliError."""
    headers = {"Accept": "text/event-stream"}
    with open_url(settings, "GET", path, token=token, headers=headers, timeout_s=None) as response:
        event, data = "", []
        for raw in response:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif not line and data:
                yield event or "message", json.loads("\n".join(data))
                event, data = "", []


def events(settings: Settings, path: str, token: str | None = None) -> Iterator[dict[str, Any]]:
    """The JSON data of each event of the node's stream at `path` (see `event_stream`)."""
    try:
        for _, data in event_stream(settings, path, token):
            yield data
    except OSError as exc:
        raise CliError(f"lost the node's event stream at {path}: {exc}") from None
