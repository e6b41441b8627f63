"""Parsing of the ``from``/``to`` query values: Unix seconds or RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime

from iotman.errors import InvalidQuery

__all__ = ["parse_time_us"]


def parse_time_us(text: str, field: str) -> int:
    """Microseconds since the epoch from ``1732356000``, ``1732356000.5`` or RFC 3339."""
    value = text.strip()
    try:
        return round(float(value) * 1_000_000)
    except ValueError:
        pass
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
    return int(parsed.timestamp() * 1_000_000)
