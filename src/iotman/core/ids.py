"""Sortable unique event ids (ULID, Crockford base32) and workspace UUIDs.

Ids are generated monotonically: within one millisecond the random part is
incremented, so id order equals append order (and so ``seq`` order).
"""

from __future__ import annotations

import os
import random
import uuid

__all__ = ["UlidFactory", "new_workspace_uuid", "ulid_text", "ulid_timestamp_ms"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_CROCKFORD = {c: i for i, c in enumerate(_CROCKFORD)}
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
_SHIFTS = {n: tuple(range(10 * (n - 1), -1, -10)) for n in (5, 7, 13)}  # most significant pair first
_SHIFTS_130 = _SHIFTS[13]
_RANDOM_BITS = 80


def ulid_text(value: int) -> str:
    """Encode a 128-bit integer as a 26-character ULID (130 bits, two leading zeros)."""
    return _encode_pairs(value, 13)


def _encode_pairs(value: int, pairs: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS[pairs]])


def ulid_timestamp_ms(text: str) -> int:
    """The millisecond timestamp carried by a ULID."""
    value = 0
    for char in text[:10].upper():
        value = value * 32 + _FROM_CROCKFORD[char]
    return value


class UlidFactory:
    """Monotonic ULIDs. Not thread-safe: one factory per writer thread."""

    __slots__ = ("_head", "_head_key", "_last_ms", "_last_random", "_random")

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_random = 0
        # ids need uniqueness, not secrecy: a seeded PRNG is ~20x cheaper than os.urandom per id
        self._random = random.Random(os.urandom(32))
        self._head_key = (-1, -1)
        self._head = ""

    def block(self, ms: int, count: int) -> list[str]:
        """``count`` consecutive ids at (or after) millisecond ``ms``.

        Consecutive ids differ only in their last two characters until a carry, so a
        block costs one string concatenation per id (DESIGN: ids must be cheap on the
        batch path).
        """
        if ms <= self._last_ms:
            ms = self._last_ms
            first = self._last_random + 1
        else:
            # top bit cleared: 2**79 increments of headroom before overflow
            first = self._random.getrandbits(_RANDOM_BITS - 1)
        last = first + count - 1
        if last >= 1 << _RANDOM_BITS:  # pragma: no cover - needs 2**79 ids in one ms
            ms += 1
            first = self._random.getrandbits(_RANDOM_BITS - 1)
            last = first + count - 1
        self._last_ms = ms
        self._last_random = last
        if count == 1:
            return [self._prefix(ms, first >> 10) + _PAIRS[first & 1023]]
        out: list[str] = []
        current = first
        while current <= last:
            low = current & 1023
            take = min(1024 - low, last - current + 1)
            head = self._prefix(ms, current >> 10)
            out.extend([head + pair for pair in _PAIRS[low : low + take]])
            current += take
        return out

    def _prefix(self, ms: int, high: int) -> str:
        """The first 24 characters (time + upper 70 random bits), cached for the next id."""
        if self._head_key != (ms, high):
            self._head_key = (ms, high)
            self._head = _encode_pairs(ms, 5) + _encode_pairs(high, 7)
        return self._head


def new_workspace_uuid() -> str:
    return str(uuid.uuid4())
