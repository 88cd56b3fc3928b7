"""One program's run in a directory: inputs, process, limits, log, time limit, checkpoints, outputs.

Layout under `base`: `work/` (the program's working directory, inputs land here), `control/`
(checkpoint protocol files), `outputs/` (what the run kept), `program.log` (stdout and stderr,
appended run after run, capped at `max_log_bytes`). The state directory is given separately: the
local pool keeps it beside, the simulator in its storage bucket.

The process runs in its own session (the whole group is signalled), with an environment holding
only PATH, HOME=work/, what the deployment sets and the CPNODE_* variables, without core files,
with an address-space limit when one is set, and dies with the pool (parent-death signal). Its end
is recorded as a `RunStatus` (see `connectors.contract.EndReason`) after its kept outputs are
collected, so whoever sees the end also sees the outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import resource
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from connectors.contract import EndReason, LogChunk, OutputFile, Program
from connectors.errors import InvalidRequest, InvalidState, PluginTimeout
from connectors.sandbox.files import collect_outputs, forget_outputs, listed_outputs, read_log
from connectors.sandbox.inputs import InputPolicy, InputProblem, check_inputs, fetch_inputs

RunState = Literal["starting", "running", "stopped", "failed"]
_FRAMEWORK = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover — no C library to call prctl with
    _LIBC = None


def now_ms() -> int:
    """Wall-clock time in UTC epoch milliseconds."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class SandboxSettings:
    """Limits and mappings of a pool's sandboxes."""

    memory_bytes: int | None = None
    runtimes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    inputs: InputPolicy = field(default_factory=InputPolicy)
    max_log_bytes: int = 64 << 20
    stop_grace_s: float = 5.0


@dataclass(frozen=True)
class RunStatus:
    """A run as the contract's `Instance` reports it."""

    state: RunState
    started_ms: int | None = None
    ended_ms: int | None = None
    exit_code: int | None = None
    reason: EndReason | None = None
    detail: str = ""


def command_for(program: Program, runtimes: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The argv that runs `program` here: its command, or for an image the local runtime its
    framework maps to, followed by the command as the entrypoint's arguments."""
    if program.image is None:
        assert program.command, "Program requires a command or an image"
        return list(program.command)
    runtime = runtimes.get(program.framework) if program.framework else None
    if not runtime:
        known = ", ".join(sorted(runtimes)) or "none"
        what = f"framework {program.framework!r}" if program.framework else "an image that names no framework"
        raise InvalidRequest(
            f"this pool cannot run image {program.image!r}: it maps no local runtime to {what}"
            f" (configured runtimes: {known})"
        )
    return [*runtime, *(program.command or [])]


def parse_runtimes(value: object) -> dict[str, tuple[str, ...]]:
    """The `runtimes` option: a table framework → argv (a list, or one shell-quoted string), or the
    same as JSON text (how `--option runtimes=...` passes it)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidRequest(
                "option 'runtimes' must be a table (or its JSON) of framework → argv"
            ) from None
    if not isinstance(value, Mapping):
        raise InvalidRequest("option 'runtimes' must be a table of framework → argv")
    runtimes: dict[str, tuple[str, ...]] = {}
    for name, argv in value.items():
        if not isinstance(name, str) or not _FRAMEWORK.fullmatch(name):
            raise InvalidRequest(f"runtimes: {name!r} is not a framework name (a–z, 0–9, '.', '_', '-')")
        parts = shlex.split(argv) if isinstance(argv, str) else argv
        if (
            not isinstance(parts, list | tuple)
            or not parts
            or not all(isinstance(p, str) and p for p in parts)
        ):
            raise InvalidRequest(f"runtimes.{name} must be a non-empty list of strings (the argv to run)")
        runtimes[name] = tuple(parts)
    return runtimes


def check_program(program: Program, settings: SandboxSettings) -> None:
    """Refuse, at deploy, a program this pool cannot run (unmapped image, inputs it will not fetch)."""
    command_for(program, settings.runtimes)
    check_inputs(program.inputs, settings.inputs)


def _child_setup(address_space_bytes: int | None) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if address_space_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
    if _LIBC is not None:  # the program dies with the pool instead of running on unwatched
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text(encoding="ascii").strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


class Sandbox:
    """Runs one program at a time under `base`, reporting every change of its run to `on_change`."""

    def __init__(
        self,
        base: Path,
        state_dir: Path,
        settings: SandboxSettings,
        on_change: Callable[[RunStatus], None],
        instance_id: str,
    ) -> None:
        self.base, self.state_dir, self.settings = base, state_dir, settings
        self.work, self.control, self.outputs_dir = base / "work", base / "control", base / "outputs"
        self.log = base / "program.log"
        self.instance_id = instance_id
        self.status: RunStatus | None = None
        self._on_change = on_change
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._fetching = False
        self._starting = asyncio.Lock()  # held by `start` across the launch, so a stop waits for it
        self._stop_reason: EndReason | None = None
        self._stop_ms = 0
        self._keep_error = ""

    @property
    def active(self) -> bool:
        """Whether a run is fetching inputs or running."""
        return self._task is not None and not self._task.done()

    def _set(self, status: RunStatus) -> None:
        self.status = status
        self._on_change(status)

    def prepare(self) -> None:
        """Create the sandbox's directories."""
        for directory in (self.work, self.control, self.state_dir):
            directory.mkdir(parents=True, exist_ok=True)

    # -- starting ------------------------------------------------------------------------------------

    async def start(self, program: Program, *, restore: bool = False) -> RunStatus:
        """Start a run: `starting` while inputs are fetched, else at once `running` (or `failed`)."""
        async with self._starting:
            return await self._start(program, restore)

    async def _start(self, program: Program, restore: bool) -> RunStatus:
        if self.active:
            raise InvalidState(f"instance {self.instance_id} is already running a program")
        argv = command_for(program, self.settings.runtimes)
        self.prepare()
        for stale in ("checkpoint.request", "checkpoint.done", "ready"):
            (self.control / stale).unlink(missing_ok=True)
        forget_outputs(self.outputs_dir)
        self._stop_reason, self._process, self._keep_error = None, None, ""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work),
            **program.env,
            "CPNODE_STATE_DIR": str(self.state_dir),
            "CPNODE_CONTROL_DIR": str(self.control),
            "CPNODE_INSTANCE_ID": self.instance_id,
        }
        if restore:
            env["CPNODE_RESTORE"] = "1"
        if program.inputs:
            self._set(RunStatus("starting"))
            self._fetching = True
            self._task = asyncio.create_task(self._fetch_and_run(program, argv, env))
        else:
            process = await self._spawn(argv, env)
            if process is not None:
                self._task = asyncio.create_task(self._watch(program, process))
        assert self.status is not None
        return self.status

    async def _fetch_and_run(self, program: Program, argv: list[str], env: dict[str, str]) -> None:
        try:
            check_inputs(program.inputs, self.settings.inputs)
            await fetch_inputs(program.inputs, self.work, self.settings.inputs)
        except (InputProblem, InvalidRequest) as exc:
            reason: EndReason = exc.reason if isinstance(exc, InputProblem) else "input_unavailable"
            self._end(None, reason, str(exc))
            return
        except asyncio.CancelledError:  # stopped while fetching: the program never ran
            self._end(None, self._stop_reason or "stopped", "stopped before the program started")
            raise
        finally:
            self._fetching = False
        if self._stop_reason is not None:
            self._end(None, self._stop_reason, "stopped before the program started")
            return
        process = await self._spawn(argv, env)
        if process is not None:
            await self._watch(program, process)

    async def _spawn(self, argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process | None:
        limit = self.settings.memory_bytes
        # The run starts when it is launched: read after the launch returns, the clock would lose
        # however long a busy event loop took to come back, and the run would be metered short.
        started_ms = now_ms()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.work,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _child_setup(limit),
            )
        except OSError as exc:
            self._end(None, "start_failed", f"cannot start {argv[0]!r}: {exc.strerror}")
            return None
        self._process = process
        self._set(RunStatus("running", started_ms=started_ms))
        return process

    # -- running and ending --------------------------------------------------------------------------

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        """Copy the program's output into the log, up to `max_log_bytes`, then drain the rest."""
        cap = self.settings.max_log_bytes
        with self.log.open("ab") as handle:
            written = handle.tell()
            while block := await stream.read(1 << 16):
                if written >= cap:
                    continue
                if written + len(block) > cap:
                    block = block[: cap - written] + f"\n[log truncated at {cap} bytes]\n".encode()
                handle.write(block)
                handle.flush()
                written += len(block)

    async def _watch(self, program: Program, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        assert self.status is not None
        pump = asyncio.create_task(self._pump(process.stdout))
        started_ms = self.status.started_ms or now_ms()
        if self._stop_reason is not None:  # stopped while its inputs' run was being launched
            await self._terminate(process)
        elif program.max_duration_s is None:
            await process.wait()
        else:
            left_s = max(0.0, started_ms / 1000 + program.max_duration_s - time.time())
            try:
                async with asyncio.timeout(left_s):
                    await process.wait()
            except TimeoutError:
                self._request_stop("max_duration", started_ms + program.max_duration_s * 1000)
                await self._terminate(process)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # nothing of the run outlives its main process
        await pump
        code = process.returncode
        assert code is not None
        try:
            await asyncio.to_thread(collect_outputs, self.work, self.outputs_dir, program.outputs)
        except OSError as exc:  # the run still ends; what could not be kept is said
            await asyncio.to_thread(collect_outputs, self.work, self.outputs_dir, [])
            self._keep_error = f"outputs could not be kept: {exc}"
        self._process = None
        if self._stop_reason is not None:
            self._end(started_ms, self._stop_reason, "", code)
        elif code == 0:
            self._set(RunStatus("stopped", started_ms, now_ms(), 0, None, self._keep_error))
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            self._end(started_ms, "killed", f"the program was killed by {name}", code)
        else:
            self._end(started_ms, "exit_nonzero", f"the program exited with code {code}", code)

    def _end(self, started_ms: int | None, reason: EndReason, detail: str, code: int | None = None) -> None:
        ended = self._stop_ms if reason == "max_duration" else now_ms()
        if started_ms is None:  # the program never ran: it kept nothing
            collect_outputs(self.work, self.outputs_dir, [])
        state: RunState = "stopped" if reason in ("stopped", "max_duration") else "failed"
        if reason == "max_duration":
            detail = detail or "stopped at its max_duration_s"
        detail = "; ".join(part for part in (detail, self._keep_error) if part)
        self._set(RunStatus(state, started_ms, ended, code, reason, detail))

    def _request_stop(self, reason: EndReason, at_ms: int) -> None:
        if self._stop_reason is None:  # the first reason to stop is the one reported
            self._stop_reason, self._stop_ms = reason, at_ms

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.settings.stop_grace_s):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    async def stop(self, reason: EndReason = "stopped") -> RunStatus | None:
        """End the run (`stopped`, or `lost` when the pool itself goes away) and wait until it has
        ended; a run already over is left as it was."""
        async with self._starting:  # a launch under way ends first: what it launched is stopped too
            task = self._task
        if task is None or task.done():
            return self.status
        self._request_stop(reason, now_ms())
        if self._process is not None:
            await self._terminate(self._process)
        elif self._fetching:
            task.cancel()
        # Waited for however it ends (a cancel of this stop's own caller still raises here); an
        # error it ended with is raised, its cancellation is not.
        await asyncio.wait([task])
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
        if self.status is not None and self.status.state == "starting":  # cancelled before it began
            self._end(None, self._stop_reason or reason, "stopped before the program started")
        return self.status

    # -- reading ---------------------------------------------------------------------------------------

    async def checkpoint(self, timeout_s: float) -> int:
        """Ask the running program to checkpoint (the local pool's protocol); its sequence number."""
        process = self._process
        if process is None or process.returncode is not None:
            raise InvalidState(f"instance {self.instance_id} has no running program to checkpoint")
        done = self.control / "checkpoint.done"
        seq = _read_int(done) + 1
        request = self.control / "checkpoint.request.tmp"
        request.write_text(str(seq), encoding="ascii")
        os.replace(request, self.control / "checkpoint.request")
        if (self.control / "ready").exists():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while _read_int(done) < seq:
            if process.returncode is not None:
                raise InvalidState(
                    f"program of {self.instance_id} exited ({process.returncode}) before checkpointing"
                )
            if time.monotonic() > deadline:
                raise PluginTimeout(f"program of {self.instance_id} did not checkpoint within {timeout_s} s")
            await asyncio.sleep(0.02)
        return seq

    def logs(self, offset: int, limit: int) -> LogChunk:
        """A slice of the log; `complete` once no run is active and the slice reaches the end."""
        data, size = read_log(self.log, offset, limit)
        start = min(offset, size)
        return LogChunk.of(start, data, size, not self.active and start + len(data) >= size)

    def kept_outputs(self) -> list[OutputFile] | None:
        """What the latest run kept, or None while it has not ended."""
        return None if self.active else listed_outputs(self.outputs_dir)
