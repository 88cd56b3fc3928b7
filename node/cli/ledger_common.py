"""What the `cpnode ledger` command modules share: times, the database, the node's key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from nacl.signing import SigningKey, VerifyKey
from sqlalchemy.engine import Engine

import ledger
from node.cli.common import CliError, node_database, print_json
from node.config import Settings
from node.identity import IdentityError, load_identity


def parse_time_ms(text: str) -> int:
    """UTC epoch milliseconds from digits, or from an ISO 8601 date or time (UTC when no offset is given)."""
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"not a time: {text!r} (use ISO 8601 like 2026-01-31T12:00:00Z, or epoch ms)", 2
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


@contextmanager
def ledger_database(settings: Settings) -> Iterator[Engine]:
    """The configured database, migrated, with ledger errors reported as CliError."""
    with node_database(settings) as engine:
        try:
            yield engine
        except ledger.LedgerError as exc:
            raise CliError(f"ledger: {exc}") from None


def node_key(settings: Settings) -> tuple[str, SigningKey]:
    """(checkpoint origin, signing key) of this node."""
    try:
        identity = load_identity(settings)
    except IdentityError as exc:
        raise CliError(str(exc)) from None
    return ledger.origin_for(identity.name), identity.signing_key


def key_argument(text: str) -> VerifyKey:
    """The node public key given as `--key ed25519:<base64url>`; CliError (exit 2) if it is not one."""
    from federation.keys import parse_public_key
    from node.peering.settings import check_public_key

    try:
        return parse_public_key(check_public_key(text))
    except ValueError as exc:
        raise CliError(f"--key: {exc}", 2) from None


def verification_failed(exc: ledger.AuditError, as_json: bool, where: str = "file") -> int:
    """Report an offline verification that failed: a JSON answer with `ok: false` and what failed
    under the key `where` (exit 1), or a CliError `verification FAILED: ...` naming it."""
    if as_json:
        print_json({"ok": False, where: exc.where, "seq": exc.seq, "error": str(exc)})
        return 1
    raise CliError(f"verification FAILED: {exc}") from None
