"""A preloaded interpreter that starts `cpnode` processes by forking (`python -m node.forkserver`).

A node process spends almost all of its start importing cpnode and its libraries (about 0.7 s of
CPU here). Where many nodes start one after another, as in the test suite, the fork server imports
them once and forks a child for each start: the child is a process of its own that runs the same
`main(argv)` a `python -m node ...` process runs, with its own arguments, environment, working
folder, standard output and standard error, and exits with that command's code.

The launcher (`node.launcher`) talks to the server over a Unix socket: one request per start (the
arguments, environment and folder as JSON, with the child's stdout, stderr and status descriptors
passed alongside), answered with the child's pid. The server reaps its children and writes each
one's exit code (negative: the signal that ended it, as `subprocess` reports it) to the status
descriptor, so `ForkedProcess` can poll and wait like `subprocess.Popen`. The server exits when the
launcher closes the socket. Linux only (SOCK_SEQPACKET, descriptor passing).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from typing import IO, Any

# What a `cpnode run` imports before it listens: its command, the node service and its components.
PRELOAD = ("node.cli.main", "node.cli.run_cmd", "node.service")
_MAX_REQUEST = 1 << 20  # one request: argv, environment and folder as JSON
_STATUS = struct.Struct("!i")  # a child's exit code on its status descriptor
READY = b"ready"


class ForkedProcess:
    """A process started by the fork server, with the part of `subprocess.Popen`'s interface the
    launcher and the tests use: pid, returncode, stdout, poll, wait, send_signal, terminate, kill."""

    def __init__(self, args: list[str], pid: int, stdout: IO[str], status_fd: int) -> None:
        self.args = args
        self.pid = pid
        self.stdout: IO[str] | None = stdout
        self.returncode: int | None = None
        self._status_fd = status_fd
        self._lock = threading.Lock()

    def _read_status(self, timeout_s: float | None) -> int | None:
        """The exit code once the server reports it (within `timeout_s`; None: wait for it)."""
        if self.returncode is None:
            ready, _, _ = select.select([self._status_fd], [], [], timeout_s)
            if ready:
                with self._lock:
                    if self.returncode is None:
                        data = os.read(self._status_fd, _STATUS.size)
                        # The server writes the whole code at once; an empty read means it died
                        # without reporting: the child's fate is unknown, so it counts as killed.
                        full = len(data) == _STATUS.size
                        self.returncode = _STATUS.unpack(data)[0] if full else -signal.SIGKILL
        return self.returncode

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._status_fd)

    def poll(self) -> int | None:
        """The exit code, or None while the process runs."""
        return self._read_status(0)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit and return its code; `subprocess.TimeoutExpired` on timeout."""
        code = self._read_status(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the process unless it has exited."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)


class ForkServerClient:
    """The launcher's side: starts the server on first use and asks it for processes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._server: subprocess.Popen[bytes] | None = None
        self.broken = False

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "node.forkserver", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        ours.settimeout(120.0)  # the server imports cpnode first: slow on a loaded machine
        if ours.recv(64) != READY:  # it refused (threads after its imports) or failed to start
            ours.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._server.wait(timeout=30)
            raise OSError("the fork server did not start")
        ours.settimeout(None)
        atexit.register(self.close)
        return ours

    def spawn(self, args: list[str], env: dict[str, str], cwd: str, stderr: int) -> ForkedProcess:
        """Start `args` (a `python -m node ...` command line) in a child of the server."""
        out_r, out_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                if self._sock is None:
                    self._sock = self._start()
                request = json.dumps({"argv": args[3:], "env": env, "cwd": cwd}).encode()
                socket.send_fds(self._sock, [request], [out_w, stderr, status_w])
                answer = self._sock.recv(64)
            if not answer:
                raise OSError("the fork server closed its socket")
            pid = int(answer)
        except BaseException:
            os.close(out_r)
            os.close(status_r)
            raise
        finally:
            os.close(out_w)
            os.close(status_w)
        return ForkedProcess(args, pid, os.fdopen(out_r, "r"), status_r)

    def close(self) -> None:
        """Stop the server (its running children go on; they stop as the launcher stops them)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._server is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._server.wait(timeout=10)
                self._server = None


def _exit_code(status: int) -> int:
    """`subprocess`'s exit code for a wait status: the code, or minus the signal that ended it."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _child(request: dict[str, Any], fds: list[int], closing: list[int]) -> None:
    """In the forked child: become the requested command and exit with its code (never returns)."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        out, err, status = fds
        for fd in closing:
            os.close(fd)
        os.close(status)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [os.path.join(os.path.dirname(__file__), "__main__.py"), *request["argv"]]
        from node.cli.main import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:  # what an interpreter prints for an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        # What the interpreter does at exit: wait for non-daemon threads, run atexit, flush.
        with contextlib.suppress(BaseException):
            threading._shutdown()  # type: ignore[attr-defined]
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def serve(control_fd: int) -> None:
    """The server's loop: preload, then fork a child per request until the control socket closes."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    control = socket.socket(fileno=control_fd)
    if threading.active_count() > 1:  # forking a process with threads is not safe: refuse
        return
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: dict[int, int] = {}  # pid -> its status descriptor
    control.sendall(READY)
    watched = [control.fileno(), wake_r]
    while True:
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(watched, [], [])
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        _reap(children)
        if control.fileno() not in readable:
            continue
        data, fds, _, _ = socket.recv_fds(control, _MAX_REQUEST, 3)
        if not data:
            break
        pid = os.fork()
        if pid == 0:
            _child(json.loads(data), fds, [control.fileno(), wake_r, wake_w, *children.values()])
        os.close(fds[0])
        os.close(fds[1])
        children[pid] = fds[2]
        control.sendall(str(pid).encode())
    _reap(children)


def _reap(children: dict[int, int]) -> None:
    """Report each child that has exited on its status descriptor."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = children.pop(pid, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, _STATUS.pack(_exit_code(status)))
            os.close(fd)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
