"""`python -m bench [NAME ...] [--json] [OPTIONS]`: run every benchmark (or the named ones) one after
another; other options are passed on to each benchmark (`python -m bench ledger --group`)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the benchmark modules in bench/ (`bench_<name>.py`, with `-` for `_` in NAME)."""
    return sorted(path.stem.removeprefix("bench_").replace("_", "-") for path in HERE.glob("bench_*.py"))


def module_of(name: str) -> str:
    """The module that runs benchmark `name`."""
    return f"bench.bench_{name.replace('-', '_')}"


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks as separate processes; return non-zero if any failed."""
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run cpnode's benchmarks.")
    parser.add_argument(
        "names", nargs="*", choices=[[], *names], metavar="NAME", help=f"one of {', '.join(names)}"
    )
    parser.add_argument(
        "--json", action="store_true", help="each benchmark ends with one JSON line of its figures and ratios"
    )
    args, passed_on = parser.parse_known_args(argv)
    failed = []
    for name in args.names or names:
        print(f"\n=== bench {name} ===", flush=True)
        started = time.monotonic()
        extra = (["--json"] if args.json else []) + passed_on
        code = subprocess.call([sys.executable, "-m", module_of(name), *extra], cwd=HERE.parent)
        print(f"=== bench {name}: exit {code} after {time.monotonic() - started:.1f} s ===", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
