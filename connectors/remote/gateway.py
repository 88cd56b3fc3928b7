"""The compute gateway, plugin side: registering a bare host's pool with its node.

The first registration presents the node's signed, single-use registration code; the node answers
a standing gateway token, kept in the gateway's state file (mode 0600) with the pool name and the
node's URL, so the gateway registers again after a restart, or after the node forgot it, without a
new code. The node verifies the code; this side only reads the pool and node URL out of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from connectors.remote.server import Registrar, RegistrationRefused, post_registration


@dataclass(frozen=True)
class GatewayState:
    """What a gateway keeps between runs."""

    pool: str
    node_url: str
    gateway_token: str = ""


def load_state(path: Path) -> GatewayState | None:
    """The saved state, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return GatewayState(str(data["pool"]), str(data["node_url"]), str(data.get("gateway_token", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_state(path: Path, state: GatewayState) -> None:
    """Write the state atomically, readable by its owner only (it holds a credential)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(asdict(state), handle)
    os.replace(temporary, path)


def gateway_registrar(state_path: Path, state: GatewayState, code: str | None) -> Registrar:
    """Registration by the saved gateway token, else by `code` (whose answer's token is then saved)."""
    url = f"{state.node_url.rstrip('/')}/api/v1/gateway/register"

    async def register(session: aiohttp.ClientSession, facts: dict[str, Any]) -> tuple[str, float]:
        saved = load_state(state_path)
        base = {key: facts[key] for key in ("url", "call_token", "version")}
        data: dict[str, Any] | None = None
        if saved is not None and saved.pool == state.pool and saved.gateway_token:
            try:
                data = await post_registration(
                    session, url, {**base, "pool": saved.pool, "gateway_token": saved.gateway_token}
                )
            except RegistrationRefused:
                if code is None:
                    raise
        if data is None:
            if code is None:
                raise RegistrationRefused("no registration code, and no saved gateway token the node accepts")
            data = await post_registration(session, url, {**base, "code": code})
            save_state(state_path, GatewayState(state.pool, state.node_url, str(data["gateway_token"])))
        return str(data["heartbeat_token"]), float(data["heartbeat_interval_s"])

    return register
