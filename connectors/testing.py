"""The conformance test class every compute plugin runs (pytest): `ComputePluginConformance`.

A plugin's test module subclasses it and provides two fixtures: `plugin` (a started plugin,
closed after the test) and `program` (a Program its pool can run that follows its checkpoint
protocol). Each test runs the same checks `cpnode plugins check` runs against a live plugin; the
run checks deploy Python scripts run by `python` (default: this interpreter).

    class TestMyPool(ComputePluginConformance):
        @pytest.fixture(name="plugin")
        async def fixture_plugin(self, tmp_path): ...
"""

from __future__ import annotations

import sys
from typing import ClassVar

from connectors.conformance import CHECKS, CheckContext, run_checks
from connectors.contract import ComputePlugin, Program

_BY_NAME = dict(CHECKS)


class ComputePluginConformance:
    """Contract tests shared by every compute plugin."""

    timeout_s = 30.0
    python: ClassVar[list[str]] = [sys.executable]

    async def _run(self, plugin: ComputePlugin, program: Program, *names: str) -> CheckContext:
        ctx = CheckContext(plugin=plugin, program=program, timeout_s=self.timeout_s, python=self.python)
        try:
            for name in names:
                await _BY_NAME[name](ctx)
        finally:
            if ctx.instance is not None:
                await plugin.delete_instance(ctx.instance.id)
            await ctx.inputs.close()
        return ctx

    async def test_describes_itself_and_is_healthy(self, plugin: ComputePlugin, program: Program) -> None:
        """The plugin names itself, reports health and authenticates its account."""
        await self._run(plugin, program, "info", "health", "account")

    async def test_data_source_is_consistent(self, plugin: ComputePlugin, program: Program) -> None:
        """Prices and capacity name only known regions and flavors; chips are in the catalogue."""
        await self._run(plugin, program, "data source")

    async def test_lifecycle_checkpoint_and_storage(self, plugin: ComputePlugin, program: Program) -> None:
        """An instance is created, runs a program, checkpoints, serves its state, stops and is deleted."""
        await self._run(
            plugin, program, "data source", "lifecycle", "checkpoint", "storage endpoint", "stop and delete"
        )

    async def test_unknown_things_are_refused(self, plugin: ComputePlugin, program: Program) -> None:
        """Unknown instances and flavors raise the contract's errors, never something else."""
        await self._run(plugin, program, "data source", "errors")

    async def test_a_run_fetches_inputs_logs_and_keeps_outputs(
        self, plugin: ComputePlugin, program: Program
    ) -> None:
        """Inputs are fetched and verified, the log reads in slices, declared outputs are kept with
        their hashes and served read-only with byte ranges, and the run's times are recorded."""
        await self._run(plugin, program, "data source", "task run")

    async def test_an_input_mismatch_fails_before_the_program_starts(
        self, plugin: ComputePlugin, program: Program
    ) -> None:
        """An input whose SHA-256 differs fails the run (`input_mismatch`) with no start time and no output."""
        await self._run(plugin, program, "data source", "input mismatch")

    async def test_failures_carry_exit_code_reason_and_times(
        self, plugin: ComputePlugin, program: Program
    ) -> None:
        """A non-zero exit is `exit_nonzero` with its code; a program killed by a signal is `killed`."""
        await self._run(plugin, program, "data source", "failures")

    async def test_max_duration_stops_the_program_at_the_limit(
        self, plugin: ComputePlugin, program: Program
    ) -> None:
        """Past `max_duration_s` the program is stopped (`max_duration`) and its end time is the limit."""
        await self._run(plugin, program, "data source", "time limit")

    async def test_logs_while_running_and_stop_twice(self, plugin: ComputePlugin, program: Program) -> None:
        """A running program's log is readable; a second stop is harmless."""
        await self._run(plugin, program, "data source", "stop twice")

    async def test_full_check_run_passes(self, plugin: ComputePlugin, program: Program) -> None:
        """The same run `cpnode plugins check` does reports every check passed."""
        results = await run_checks(plugin, program, self.timeout_s, self.python)
        failed = [f"{r.name}: {r.detail}" for r in results if not r.passed]
        assert not failed, failed
