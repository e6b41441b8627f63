from __future__ import annotations

import pytest

from iotman.connect.json_codec import dump_json, load_json, parse_json
from iotman.errors import InvalidJson


def test_big_integers_round_trip_exactly() -> None:
    big = 2**70 + 1
    value = parse_json(f'{{"a": {big}, "b": [-{big}]}}'.encode())
    assert value == {"a": big, "b": [-big]}
    assert load_json(dump_json(value)) == value


@pytest.mark.parametrize(
    ("body", "position"),
    [(b'{"a": }', 6), (b"[1, 2", 5), (b"NaN", 0), (b'{"a": 1} x', 9), (b"\xff", 0)],
)
def test_errors_carry_position(body: bytes, position: int) -> None:
    with pytest.raises(InvalidJson) as caught:
        parse_json(body)
    assert caught.value.position == position
    assert "not valid JSON" in caught.value.message


def test_nan_is_refused_also_on_the_fallback_parser() -> None:
    with pytest.raises(InvalidJson):
        parse_json(b'{"n": NaN, "big": 12345678901234567890123}')


def test_lone_surrogate_escape_is_stored_escaped() -> None:
    value = parse_json(b'"\\ud800"')
    text = dump_json(value)
    text.encode("utf-8")  # storable
    assert load_json(text) == value


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(InvalidJson):
        parse_json(b"[" * 100_000 + b"]" * 100_000)
