"""Running wrk against a loopback URL and reading its report.

wrk's text report is the source of truth (``Requests/sec``, ``N requests in``,
``Socket errors``, ``Non-2xx or 3xx responses``); the ``done()`` hook of
``wrk_post.lua`` adds one ``BENCH_SUMMARY {json}`` line with latency percentiles.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["WRK_SCRIPT", "WrkError", "WrkRun", "WrkSettings", "find_wrk", "parse_wrk_output", "run_wrk"]

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"

_REQUESTS_PER_S = re.compile(r"^\s*Requests/sec:\s*([0-9]+(?:\.[0-9]+)?)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*([0-9]+) requests in ([0-9.]+)(us|ms|s|m|h)\b", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors:\s*connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)", re.MULTILINE
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*([0-9]+)", re.MULTILINE)
_SUMMARY = re.compile(r"^BENCH_SUMMARY (\{.*\})\s*$", re.MULTILINE)
_SECONDS_PER_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class WrkError(RuntimeError):
    """wrk did not run or its report could not be read."""


@dataclass(frozen=True, slots=True)
class WrkSettings:
    threads: int
    connections: int
    duration_s: int
    timeout_s: int = 5

    def argv(self, wrk: str, url: str, duration_s: int | None = None) -> list[str]:
        return [
            wrk,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{duration_s if duration_s is not None else self.duration_s}s",
            f"--timeout={self.timeout_s}s",
            "-s",
            str(WRK_SCRIPT),
            url,
        ]


@dataclass(slots=True)
class WrkRun:
    requests: int
    duration_s: float
    requests_per_s: float
    non_2xx: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    wrk_cpu_seconds: float | None = None
    wrk_cpu_percent: float | None = None
    output: str = ""

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def ok_requests(self) -> int:
        """Completed requests answered with a status below 400."""
        return max(0, self.requests - self.non_2xx)

    @property
    def ok_requests_per_s(self) -> float:
        """Requests/sec counting only the accepted answers (equal to requests_per_s without errors)."""
        return self.requests_per_s * self.ok_requests / self.requests if self.requests else 0.0

    def problems(self, what: str) -> list[str]:
        found = []
        if self.non_2xx:
            found.append(f"{what}: {self.non_2xx} of {self.requests} responses were not 2xx/3xx")
        if self.socket_errors:
            found.append(
                f"{what}: socket errors connect {self.connect_errors}, read {self.read_errors},"
                f" write {self.write_errors}, timeout {self.timeouts}"
            )
        if self.requests == 0:
            found.append(f"{what}: no request completed")
        return found

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("output")
        return data


def find_wrk() -> str | None:
    return shutil.which("wrk")


def parse_wrk_output(text: str) -> WrkRun:
    """The figures of one wrk report; raises WrkError if the report has no rate."""
    rate = _REQUESTS_PER_S.search(text)
    total = _TOTAL.search(text)
    if rate is None or total is None:
        raise WrkError("wrk printed no 'Requests/sec' / 'requests in' line:\n" + text.strip())
    run = WrkRun(
        requests=int(total.group(1)),
        duration_s=float(total.group(2)) * _SECONDS_PER_UNIT[total.group(3)],
        requests_per_s=float(rate.group(1)),
        output=text,
    )
    if (sockets := _SOCKET_ERRORS.search(text)) is not None:
        run.connect_errors, run.read_errors, run.write_errors, run.timeouts = (int(g) for g in sockets.groups())
    if (non_2xx := _NON_2XX.search(text)) is not None:
        run.non_2xx = int(non_2xx.group(1))
    if (summary := _SUMMARY.search(text)) is not None:
        _merge_summary(run, orjson.loads(summary.group(1)))
    return run


def _merge_summary(run: WrkRun, summary: dict[str, Any]) -> None:
    # The hook sees the same counters; take the larger so neither source can hide errors.
    run.non_2xx = max(run.non_2xx, int(summary.get("status_errors", 0)))
    run.timeouts = max(run.timeouts, int(summary.get("timeouts", 0)))
    run.connect_errors = max(run.connect_errors, int(summary.get("connect_errors", 0)))
    run.read_errors = max(run.read_errors, int(summary.get("read_errors", 0)))
    run.write_errors = max(run.write_errors, int(summary.get("write_errors", 0)))
    run.latency_ms = {
        name: round(int(summary[f"latency_{name}_us"]) / 1000.0, 2)
        for name in ("p50", "p90", "p99", "max")
        if f"latency_{name}_us" in summary
    }


def run_wrk(
    wrk: str,
    url: str,
    settings: WrkSettings,
    body_file: Path,
    content_type: str,
    duration_s: int | None = None,
) -> WrkRun:
    """Run wrk once (bounded by a hard timeout) and parse its report."""
    seconds = duration_s if duration_s is not None else settings.duration_s
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file), BENCH_CONTENT_TYPE=content_type)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        finished = subprocess.run(
            settings.argv(wrk, url, seconds),
            capture_output=True,
            text=True,
            env=env,
            timeout=seconds + settings.timeout_s + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {exc.timeout:.0f} s (it was killed)") from None
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = finished.stdout + ("\n" + finished.stderr if finished.stderr.strip() else "")
    if finished.returncode != 0:
        raise WrkError(f"wrk exited with code {finished.returncode}:\n{output.strip()}")
    run = parse_wrk_output(output)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    run.wrk_cpu_seconds = round(cpu, 3)
    run.wrk_cpu_percent = round(100.0 * cpu / wall, 1) if wall > 0 else None
    return run
