"""What one push attempt (a webhook POST, an MQTT publish) came to, and when to try again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = ["AttemptOutcome", "backoff_s", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    ok: bool
    retryable: bool = True
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    """The receiver's Retry-After, when it gave one (429, 503)."""
    latency_us: int = 0


def backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: exponential, capped,
    with jitter (a random point in the upper half), so retries of many deliveries spread out."""
    ceiling = min(max_s, base_s * (2 ** max(0, attempts - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_s)
