from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from iotman.core.time_bounds import parse_time_us
from iotman.errors import InvalidQuery
from iotman.export.read_params import parse_read_params


def test_defaults() -> None:
    params = parse_read_params({})
    assert params.limit == 100
    assert params.descending
    assert parse_read_params({}, streaming=True).limit is None


def test_next_page_keeps_the_query_and_moves_the_cursor() -> None:
    params = parse_read_params({"from": "100", "limit": "5"})
    assert parse_qs(params.next_page_query(42)) == {"from": ["100"], "limit": ["5"], "before_seq": ["42"]}
    forward = parse_read_params({"order": "asc", "after_seq": "3"})
    assert parse_qs(forward.next_page_query(9)) == {"order": ["asc"], "after_seq": ["9"], "limit": ["100"]}


def test_time_formats() -> None:
    assert parse_time_us("1795428000", "from") == 1_795_428_000_000_000
    assert parse_time_us("1795428000.5", "from") == 1_795_428_000_500_000
    assert parse_time_us("2026-11-23T10:00:00Z", "from") == 1_795_428_000_000_000
    assert parse_time_us("2026-11-23T11:00:00+01:00", "from") == 1_795_428_000_000_000
    with pytest.raises(InvalidQuery) as caught:
        parse_time_us("tomorrow", "to")
    assert caught.value.field == "to"


def test_sql_json_paths() -> None:
    from iotman.storage.sqlite.json_render import json_path

    assert json_path(("value",)) == "$.value"
    assert json_path(("a b", 0, "c", -1)) == '$."a b"[0].c[#-1]'
