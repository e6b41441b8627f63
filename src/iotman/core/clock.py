"""Injected time, so time-dependent logic is tested without sleeping."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "FixedClock", "SystemClock", "format_us"]


class Clock(Protocol):
    def now_us(self) -> int:
        """Microseconds since the Unix epoch."""
        ...


class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000


class FixedClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start_us: int) -> None:
        self.value = start_us

    def now_us(self) -> int:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += int(seconds * 1_000_000)


def format_us(us: int) -> str:
    """RFC 3339 UTC with microseconds: ``2026-11-23T10:00:00.123456Z``."""
    seconds, micros = divmod(us, 1_000_000)
    return _format_seconds(seconds) + f".{micros:06d}Z"


@functools.lru_cache(maxsize=256)
def _format_seconds(seconds: int) -> str:
    """The date and time of a second (cached: events of a batch, and of a busy second, share it)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
