from __future__ import annotations

from iotman.core.ids import UlidFactory, ulid_text, ulid_timestamp_ms


def reference_ulid(value: int) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def test_encoding_matches_the_ulid_spec() -> None:
    for value in (0, 1, (1 << 128) - 1, 0x0123456789ABCDEF0123456789ABCDEF, 1 << 80):
        assert ulid_text(value) == reference_ulid(value)
    assert ulid_text((1 << 128) - 1) == "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"


def test_block_is_monotonic_within_and_across_milliseconds() -> None:
    factory = UlidFactory()
    first = factory.block(1000, 3)
    same_ms = factory.block(1000, 2)
    earlier_clock = factory.block(999, 1)
    later = factory.block(1001, 1)
    ids = first + same_ms + earlier_clock + later
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert ulid_timestamp_ms(first[0]) == 1000
    assert ulid_timestamp_ms(later[0]) == 1001
