"""Starting and stopping the servers under test: subprocesses on 127.0.0.1 and free ports.

Each server is stopped by the PID its Popen returned (SIGTERM, then SIGKILL after
a grace period); nothing else is ever signalled.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.loopback_http import request

__all__ = [
    "LOOPBACK",
    "REPO_ROOT",
    "ServerError",
    "ServerProcess",
    "bench_environment",
    "free_port",
    "iotman_executable",
    "connection",
    "start_bare_endpoint",
    "start_bench_server",
    "start_iotman",
]

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
_START_ATTEMPTS = 3


class ServerError(RuntimeError):
    """A server did not start, did not become ready, or died."""


def free_port() -> int:
    """A port the kernel reports free on 127.0.0.1 (a later bind may still race; callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def bench_environment() -> dict[str, str]:
    """The caller's environment without IOTMAN_* settings, so every run uses the defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IOTMAN_")}


def iotman_executable() -> str:
    """The ``iotman`` script of the virtualenv running the benchmark."""
    candidate = Path(sys.executable).parent / "iotman"
    if not candidate.exists():
        raise ServerError(f"{candidate} does not exist; run `make install` first")
    return str(candidate)


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return 100


@dataclass
class ServerProcess:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, path: str, timeout_s: float = 30.0) -> float:
        """Poll ``GET path`` until 200; returns the seconds it took."""
        started = time.monotonic()
        last = "no answer yet"
        while time.monotonic() - started < timeout_s:
            if not self.alive():
                raise ServerError(
                    f"{self.name} exited with code {self.process.returncode} before it was ready;"
                    f" log tail:\n{self.log_tail()}"
                )
            try:
                answer = request("GET", self.base_url + path, timeout_s=2.0)
            except OSError as exc:
                last = str(exc)
            else:
                if answer.status == 200:
                    return time.monotonic() - started
                last = f"HTTP {answer.status}"
            time.sleep(0.1)
        raise ServerError(f"{self.name} not ready after {timeout_s:.0f} s ({last}); log tail:\n{self.log_tail()}")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux /proc), or None."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15
        return (int(fields[11]) + int(fields[12])) / _clock_ticks()

    def stop(self, grace_s: float = 15.0) -> str | None:
        """SIGTERM our own child, SIGKILL it if it lingers; returns None if it stopped cleanly, else why not.

        A clean stop is exit code 0, or death by the SIGTERM we sent: uvicorn re-raises
        the signal it caught once its graceful shutdown is done.
        """
        if self.process.poll() is not None:
            return f"it had already exited with code {self.process.returncode}"
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            return f"it ignored SIGTERM for {grace_s:.0f} s and was killed"
        return None if code in (0, -signal.SIGTERM) else f"it exited with code {code} after SIGTERM"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_errors(self) -> list[str]:
        """Log lines at level error/critical, and traceback lines."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        markers = ('"level": "error"', '"level": "critical"', "Traceback", "ERROR:", "CRITICAL:")
        return [line for line in text.splitlines() if any(m in line for m in markers)]


def _start(name: str, argv_for_port: Callable[[int], list[str]], log_path: Path, ready_path: str) -> ServerProcess:
    """Start a server on a free port, retrying on a fresh port if it dies at startup (port race)."""
    failure: ServerError | None = None
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv_for_port(port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=bench_environment(),
                start_new_session=True,  # a Ctrl-C reaches only us; we stop the child ourselves
            )
        server = ServerProcess(name, process, port, log_path)
        try:
            server.wait_ready(ready_path)
        except BaseException as exc:
            died_by_itself = not server.alive()
            server.stop()
            if not isinstance(exc, ServerError) or not died_by_itself:
                raise  # a hang (or an interrupt) is not a port race: do not retry
            failure = exc
            continue
        return server
    raise failure or ServerError(f"{name} did not start")


def start_iotman(data_dir: Path, log_path: Path) -> ServerProcess:
    exe = iotman_executable()
    return _start(
        "iotman serve",
        lambda port: [exe, "serve", "--host", LOOPBACK, "--port", str(port), "--data", str(data_dir)],
        log_path,
        "/readyz",
    )


def start_bench_server(name: str, module: str, log_path: Path) -> ServerProcess:
    """A server of bench/ (``python -m <module> --host --port``, ready at ``/readyz``)."""
    return _start(
        name,
        lambda port: [sys.executable, "-m", module, "--host", LOOPBACK, "--port", str(port)],
        log_path,
        "/readyz",
    )


def start_bare_endpoint(log_path: Path) -> ServerProcess:
    return start_bench_server("bare endpoint", "bench.bare_endpoint", log_path)


def connection(server: ServerProcess, timeout_s: float = 60) -> http.client.HTTPConnection:
    """A keep-alive HTTP/1.1 connection to ``server``."""
    parts = urlsplit(server.base_url)
    return http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port, timeout=timeout_s)
