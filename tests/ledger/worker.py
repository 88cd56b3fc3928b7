"""A ledger writer run as a real process by the crash and concurrency tests.

    python -m tests.ledger.worker URL SCENARIO [ARGS...]

Scenarios print a line when they reach a point the test cares about; those that must be killed
there then block until they are (the test sends SIGKILL):

- `batch ID_PREFIX COUNT BATCH`: submit COUNT transfers a→b in batches, print "done".
- `hang-in-commit ID_PREFIX COUNT`: submit COUNT transfers, stop inside the commit ("in-commit").
- `hang-after-commit ID_PREFIX COUNT`: submit and commit, stop before reporting ("committed").
- `hang-in-checkpoint`: stop while storing a signed checkpoint ("signing").
- `hang-in-sweep NOW`: stop inside the commit of an expiry sweep ("in-commit").
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

from nacl.signing import SigningKey
from sqlalchemy import event
from sqlalchemy.engine import Connection

from ledger import TransferKind, TransferRequest, expire_due, make_checkpoint, submit
from ledger.store.db import Cursor, Statement
from node.db import make_engine


def requests(prefix: str, count: int) -> list[TransferRequest]:
    """COUNT single transfers of 1 from a to b, ids PREFIX-0 …"""
    return [TransferRequest(f"{prefix}-{i}", TransferKind.SINGLE, "a", "b", "CNY", 1) for i in range(count)]


def say(text: str) -> None:
    """Report to the test on stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def hang(text: str) -> None:
    """Report, then wait to be killed."""
    say(text)
    threading.Event().wait()


def main(argv: list[str]) -> int:
    """Run one scenario."""
    url, scenario, *args = argv
    engine = make_engine(url)
    if scenario == "batch":
        prefix, count, batch = args[0], int(args[1]), int(args[2])
        todo = requests(prefix, count)
        created = 0
        for start in range(0, count, batch):
            created += sum(r.status == "created" for r in submit(engine, todo[start : start + batch]))
        say(f"done {created}")
        return 0
    if scenario in ("hang-in-commit", "hang-in-sweep"):

        @event.listens_for(engine, "commit")
        def _in_commit(conn: Connection) -> None:  # noqa: ARG001 (the event's signature)
            hang("in-commit")

        # A batch on PostgreSQL sends its COMMIT with its last statements (one round trip): stop
        # just before that round trip, with everything else of the transaction done.
        pipeline = Cursor.pipeline

        def _before_commit(cur: Cursor, statements: Sequence[Statement], **options: bool) -> Any:
            if options.get("commit"):
                hang("in-commit")
            return pipeline(cur, statements, **options)

        Cursor.pipeline = _before_commit  # type: ignore[method-assign,assignment]

        if scenario == "hang-in-commit":
            submit(engine, requests(args[0], int(args[1])))
        else:
            expire_due(engine, now=int(args[0]))
        return 1
    if scenario == "hang-after-commit":
        submit(engine, requests(args[0], int(args[1])))
        hang("committed")
    if scenario == "hang-in-checkpoint":

        @event.listens_for(engine, "begin")
        def _in_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("cpnode_write"):
                hang("signing")

        make_checkpoint(engine, SigningKey.generate(), "crash.cpnode/ledger")
        return 1
    say(f"unknown scenario {scenario}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
