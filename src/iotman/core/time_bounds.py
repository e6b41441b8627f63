"""Parsing of the ``from``/``to`` query values: Unix seconds or RFC 3339."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from iotman.errors import InvalidQuery

__all__ = ["MAX_SECONDS", "parse_time_us"]

MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


def parse_time_us(text: str, field: str) -> int:
    """Microseconds since the epoch from ``1732356000``, ``1732356000.5`` or RFC 3339."""
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or not 0 <= number <= MAX_SECONDS:
            raise InvalidQuery(
                f"{field}={text!r} is out of range (Unix seconds from 0 to {MAX_SECONDS})",
                code="invalid_time",
                field=field,
            )
        return round(number * 1_000_000)
    candidate = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        raise InvalidQuery(
            f"{field}={text!r} is neither Unix seconds nor an RFC 3339 time (2026-11-23T10:00:00Z)",
            code="invalid_time",
            field=field,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    seconds = parsed.timestamp()
    if not 0 <= seconds <= MAX_SECONDS:
        raise InvalidQuery(f"{field}={text!r} is before 1970", code="invalid_time", field=field)
    return int(seconds * 1_000_000)
