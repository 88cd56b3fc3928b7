"""Ledger proof benchmark: inclusion and consistency proofs and a `--since` export from stored
subtree hashes, against recomputing every leaf hash of the log (what each proof did before).

A SQLite ledger (WAL, synchronous=FULL) gets N transfers in batches of 1,000 with a checkpoint
after every batch, as the node's checkpoint job would make them. Then, for random leaves and sizes,
the node's proofs (`ledger.prove_inclusion`, `ledger.prove_consistency`: stored nodes plus at most
a tile of rows) are timed against the baseline in the same run: read and hash all leaves of the
tree (`leaf_hashes`), then build the same proof in memory. Both answers must be equal. Also shown:
the one-pass fill of the stored nodes for a log that has none (the first checkpoint after upgrading
a ledger), and a `--since` export of the last 1,000 transfers.

Run: .venv/bin/python -m bench proofs [--transfers N]
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from nacl.signing import SigningKey

from bench.report import bench_parser, emit_json
from ledger import (
    AccountKind,
    AccountSpec,
    TransferKind,
    TransferRequest,
    create_accounts,
    export_bundle,
    make_checkpoint,
    prove_consistency,
    prove_inclusion,
    submit,
)
from ledger.merkle import consistency_proof, inclusion_proof
from ledger.store.log import leaf_hashes
from node.db import make_engine, upgrade

ORIGIN = "bench.cpnode/ledger"


def _timed(action: Callable[[], object], repeat: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return times, result


def _fill(engine: sa.Engine, key: SigningKey, count: int, checkpoints: bool) -> None:
    specs = [AccountSpec(id=f"acct{i}", currency="CNY", kind=AccountKind.EXTERNAL) for i in range(100)]
    create_accounts(engine, specs)
    rng = random.Random(1)
    for low in range(0, count, 1000):
        batch = []
        for i in range(low, min(count, low + 1000)):
            a, b = rng.sample(range(100), 2)
            batch.append(
                TransferRequest(
                    id=f"t{i}",
                    kind=TransferKind.SINGLE,
                    debit_account=f"acct{a}",
                    credit_account=f"acct{b}",
                    currency="CNY",
                    amount=1 + i % 97,
                    code=1,
                )
            )
        submit(engine, batch, now=1_700_000_000_000 + low)
        if checkpoints:
            make_checkpoint(engine, key, ORIGIN, now=1_700_000_000_000 + low)


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=200_000)
    parser.add_argument("--proofs", type=int, default=20, help="proofs of each kind timed")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Build the ledger, time proofs both ways, print the table."""
    args = build_parser().parse_args(argv)
    n = args.transfers
    key = SigningKey.generate()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-proofs-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'ledger.db'}")
        upgrade(engine)
        start = time.perf_counter()
        _fill(engine, key, n, checkpoints=True)
        print(f"{n:,} transfers, a checkpoint every 1,000: {time.perf_counter() - start:.1f} s to write")

        def baseline_inclusion(seq: int, size: int) -> list[bytes]:
            with engine.connect() as conn:
                return inclusion_proof(leaf_hashes(conn, 0, size), seq, size)

        def baseline_consistency(old: int, size: int) -> list[bytes]:
            with engine.connect() as conn:
                return consistency_proof(leaf_hashes(conn, 0, size), old, size)

        rows = []
        for kind, stored, baseline in (
            ("inclusion", prove_inclusion, baseline_inclusion),
            ("consistency", prove_consistency, baseline_consistency),
        ):
            fast, slow = [], []
            for _ in range(args.proofs):
                size = rng.randrange(n // 2, n + 1)
                first = rng.randrange(0 if kind == "inclusion" else 1, size)
                t_fast, p_fast = _timed(functools.partial(stored, engine, first, size), 3)
                t_slow, p_slow = _timed(functools.partial(baseline, first, size), 1)
                if p_fast != p_slow:
                    raise SystemExit(f"{kind} proof ({first}, {size}) differs from the baseline's")
                fast.append(min(t_fast))
                slow.append(t_slow[0])
            rows.append((kind, statistics.median(fast), statistics.median(slow)))
        print(f"\n{'proof':<12} {'stored nodes':>14} {'every leaf':>12} {'speed-up':>9}")
        for kind, fast_s, slow_s in rows:
            print(f"{kind:<12} {fast_s * 1000:>11.2f} ms {slow_s * 1000:>9.0f} ms {slow_s / fast_s:>8,.0f}×")

        since = Path(tmp) / "since-checkpoint"
        export_bundle(engine, Path(tmp) / "full", key, ORIGIN)
        _fill_more = [
            TransferRequest(
                id=f"u{i}",
                kind=TransferKind.SINGLE,
                debit_account="acct1",
                credit_account="acct2",
                currency="CNY",
                amount=1,
                code=1,
            )
            for i in range(1000)
        ]
        since.write_bytes((Path(tmp) / "full" / "checkpoint").read_bytes())
        submit(engine, _fill_more, now=1_800_000_000_000)
        t_export, _ = _timed(
            lambda: export_bundle(engine, Path(tmp) / "since", key, ORIGIN, since_note=since.read_bytes()), 1
        )
        print(f"\n--since export of the last 1,000 transfers of {n + 1000:,}: {t_export[0] * 1000:.0f} ms")

        bare = make_engine(f"sqlite:///{Path(tmp) / 'bare.db'}")
        upgrade(bare)
        _fill(bare, key, n, checkpoints=False)
        t_backfill, _ = _timed(lambda: make_checkpoint(bare, key, ORIGIN), 1)
        print(
            f"first checkpoint of a {n:,}-transfer log with no stored nodes (one pass): {t_backfill[0]:.2f} s"
        )
    if args.json:
        figures: dict[str, float] = {}
        for kind, fast_s, slow_s in rows:
            figures[f"{kind}_p50_ms"] = round(fast_s * 1000, 3)
            figures[f"{kind}_every_leaf_p50_ms"] = round(slow_s * 1000, 1)
            figures[f"{kind}_speedup"] = round(slow_s / fast_s, 1)
        figures |= {
            "transfers": n,
            "since_export_ms": round(t_export[0] * 1000, 1),
            "first_checkpoint_s": round(t_backfill[0], 2),
        }
        emit_json("proofs", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
