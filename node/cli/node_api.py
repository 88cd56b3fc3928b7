"""Calling a running node's admin API from the command line (URL from the run file, admin token from keys/)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from node.cli.common import CliError
from node.config import Settings
from node.service import read_admin_token, running_url

TIMEOUT_S = 120.0


def node_url(settings: Settings) -> str:
    """The running node's base URL, or a CliError saying it does not run."""
    url = running_url(settings)
    if url is None:
        raise CliError("the node is not running (no data/run.json and port 0); start it with `cpnode run`")
    return url


def call(settings: Settings, method: str, path: str, body: Any = None) -> Any:
    """One admin API call; a refusal becomes a CliError with the node's error code and message."""
    url = node_url(settings) + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 — the node's own URL
    request.add_header("Authorization", f"Bearer {read_admin_token(settings)}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())
            message = f"{detail.get('error')}: {detail.get('message')}"
        except ValueError:
            message = str(exc)
        raise CliError(f"the node refused {method} {path}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(f"cannot reach the node at {url} (is `cpnode run` running?): {exc}") from None
