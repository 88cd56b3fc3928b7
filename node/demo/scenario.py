"""The main scenario of `make demo`, step by step. Each capability adds its steps here."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from node.demo import (
    accounts,
    connectors,
    federation,
    foundation,
    market,
    migration,
    scheduling,
    services,
    supervision,
    tasks,
    trading,
)
from node.demo import ledger as settlement
from node.demo.stage import DemoError, Stage

Step = Callable[[Stage], None]

# Steps run while the nodes are not yet started (init, config), then while they run.
SETUP_STEPS: tuple[Step, ...] = (
    foundation.create_nodes,
    federation.configure,
    trading.configure,
    migration.configure,
    services.configure,
)
RUN_STEPS: tuple[Step, ...] = (
    foundation.start_nodes,
    foundation.show_status,
    foundation.show_key_documents,
    federation.pin_partners,
    federation.exchange_catalogs,
    federation.show_offer_views,
    connectors.start_simulators,
    connectors.start_pool_node,
    connectors.show_offers,
    connectors.network,
    connectors.kill_and_restore_plugin,
    scheduling.network_view,
    scheduling.three_strategies,
    scheduling.ab_split,
    trading.grant_credit,
    trading.buy,
    trading.settle,
    trading.reconcile,
    trading.audit,
    settlement.audit,
    market.match_and_buy,
    tasks.pin_pool_node,
    tasks.run_task,
    tasks.fetch_outputs,
    tasks.settle_and_reconcile,
    supervision.report_to_supervisor,
    accounts.use_partner_in_own_name,
    migration.start_partner,
    migration.run_on_source,
    migration.migrate,
    migration.identical_result,
    migration.settle_both,
    services.create_service,
    services.steer_traffic,
    services.kill_replica,
)
FINAL_STEPS: tuple[Step, ...] = (foundation.stop_nodes,)


def main(argv: list[str] | None = None) -> int:
    """Run the scenario in a temporary folder; return 0 if every step did what it should."""
    parser = argparse.ArgumentParser(prog="python -m node.demo", description="Run the cpnode demo scenario.")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder afterwards")
    parser.add_argument(
        "--dir", type=Path, default=None, help="run in this folder instead of a temporary one"
    )
    args = parser.parse_args(argv)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="cpnode-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stage = Stage(workdir)
    stage.say(f"cpnode demo in {workdir}")
    try:
        for step in (*SETUP_STEPS, *RUN_STEPS, *FINAL_STEPS):
            step(stage)
    except (DemoError, OSError) as exc:
        stage.console.print(f"[bold red]demo failed:[/] {exc}")
        return 1
    finally:
        for cleanup in reversed(stage.cleanups):
            cleanup()
        if not args.keep and args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    stage.title("Demo finished")
    if args.keep or args.dir is not None:
        stage.say(f"files kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
