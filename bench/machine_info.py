"""What the figures were measured on: CPUs, Python, SQLite, wrk, kernel, date."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["load_average", "machine_info", "system_busy_seconds"]


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _wrk_version(wrk: str | None) -> str | None:
    if wrk is None:
        return None
    try:
        finished = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (finished.stdout or finished.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else None


def _iotman_version() -> str | None:
    try:
        from iotman import __version__
    except ImportError:
        return None
    return str(__version__)


def system_busy_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot, summed over CPUs (Linux /proc/stat), or None."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal ...; guest time is already in user
    ticks = [int(v) for v in first[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    try:
        per_second = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        per_second = 100
    return busy / per_second


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info(wrk: str | None) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "wrk": _wrk_version(wrk),
        "iotman": _iotman_version(),
        "load_average_1min_at_start": load_average(),
    }
