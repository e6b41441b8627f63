"""DuckDB answers every aggregation exactly as SQLite does (decision 0006).

The same file is read by two stores: one sends every aggregation to the DuckDB
worker, one keeps them in SQLite. Each answer of the first must come from DuckDB
(a fallback to SQLite would make the comparison pass vacuously).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotman.connect.json_codec import dump_json
from iotman.core.clock import FixedClock
from iotman.storage.ports import AggregateQuery, AggregateRow, AppendBatch, EventQuery
from iotman.storage.sqlite.store import AnalyticsOptions, SqliteStore
from tests.contracts.test_store_contract import T0

FUNCTIONS = ["count", "sum", "avg", "min", "max", "p50", "p95", "p99"]
HOUR = 3_600_000_000
MINUTE = 60_000_000


class Engines:
    def __init__(self, path: Path) -> None:
        self.engines: list[str] = []
        self.duck = SqliteStore(
            str(path),
            clock=FixedClock(T0),
            analytics=AnalyticsOptions(min_events=1),
            on_aggregate=lambda engine, _: self.engines.append(engine),
        )
        self.lite = SqliteStore(str(path), clock=FixedClock(T0))
        self.duck.open()
        self.lite.open()
        self._names = itertools.count()

    def workspace(self) -> int:
        name = f"w{next(self._names)}"
        return self.duck.create_workspace(name, name, T0).id

    def compare(self, query: AggregateQuery) -> list[AggregateRow]:
        expected = self.lite.aggregate(query)
        self.engines.clear()
        actual = self.duck.aggregate(query)
        if not self.engines:  # allowed only when nothing is selected: the bounds probes say so
            assert self.lite.read_events(dataclasses.replace(query.events, limit=1)) == [], query
        else:
            assert self.engines == ["duckdb"], f"DuckDB did not answer {query}"
        assert_same(actual, expected, query)
        return actual

    def close(self) -> None:
        self.duck.close()
        self.lite.close()


def assert_same(actual: list[AggregateRow], expected: list[AggregateRow], query: AggregateQuery) -> None:
    assert [(r.bucket_us, r.group, r.count) for r in actual] == [(r.bucket_us, r.group, r.count) for r in expected], (
        query
    )
    for got, want in zip(actual, expected, strict=True):
        if want.value is None or got.value is None:
            assert got.value == want.value, query
        elif isinstance(want.value, int) and isinstance(got.value, int):
            assert got.value == want.value, query  # integer sums are exact in both
        else:
            # float sums may differ in the last bits (DuckDB sums with Kahan's method)
            assert math.isclose(got.value, want.value, rel_tol=1e-9, abs_tol=1e-9), (got, want, query)


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Engines]:
    pair = Engines(tmp_path / "log.db")
    yield pair
    pair.close()


EVENTS: list[tuple[int, str, Any, str | None]] = [
    # (minute, source, payload, tags JSON)
    (0, "readings", {"value": 1, "d": "x"}, '{"device_id":"d-1","kind":"reading"}'),
    (5, "readings", {"value": 2.5}, '{"device_id":"d-1","kind":"reading"}'),
    (10, "readings", {"value": 10}, '{"device_id":"d-2","kind":"reading","n":3}'),
    (61, "readings", {"value": -4}, '{"device_id":"d-2","kind":"reading","flag":true}'),
    (62, "readings", {"value": "12"}, '{"device_id":"d-1","kind":"reading"}'),  # text: skipped
    (63, "readings", {"value": True}, '{"device_id":"d-1","kind":"reading"}'),  # boolean: skipped
    (64, "readings", {"value": None}, '{"device_id":"d-3"}'),
    (65, "readings", {"other": 1}, None),
    (66, "readings", {"value": [1, 2]}, '{"device_id":7}'),
    (67, "other", {"value": 100}, '{"device_id":"d-1","kind":"reading"}'),
    (130, "readings", {"value": 2**62}, '{"device_id":"d-4","n":3}'),
    (131, "readings", {"value": 2**62}, '{"device_id":"d-4","flag":true}'),
    (131, "readings", {"value": 1}, '{"device_id":1.0}'),
    (131, "readings", {"value": 2}, '{"device_id":1}'),
    (131, "readings", {"value": 3}, '{"device_id":true}'),
    (132, "readings", {"value": 1e300}, '{"device_id":"d-5","n":3.5}'),
    (133, "readings", {"value": 0.1}, '{"device_id":"d-5"}'),
    (134, "readings", {"value": 0.2}, '{"device_id":"d-5","q":"it\'s"}'),
    (135, "readings", [1, 2], None),
    (136, "readings", "text", '{"device_id":"d-6"}'),
]


def fill(engines: Engines, events: list[tuple[int, str, Any, str | None]]) -> int:
    ws = engines.workspace()
    for minute, source, payload, tags in events:
        batch = AppendBatch(ws, source, [dump_json(payload)], "{}", T0 + minute * MINUTE, tags=[tags])
        engines.duck.append(batch)
    return ws


SELECTIONS: list[dict[str, Any]] = [
    {},
    {"sources": ("readings",)},
    {"sources": ("readings", "other")},
    {"tags": {"kind": "reading"}},
    {"tags": {"device_id": "d-1"}, "sources": ("readings",)},
    {"tags": {"n": 3}},
    {"tags": {"flag": True}},
    {"tags": {"n": "*"}},
    {"tags": {"q": "it's"}},
]


@pytest.mark.parametrize("selection", SELECTIONS, ids=[str(s) for s in SELECTIONS])
def test_every_function_bucket_and_group_agree(engines: Engines, selection: dict[str, Any]) -> None:
    ws = fill(engines, EVENTS)
    for function, bucket, group_by in itertools.product(FUNCTIONS, (None, HOUR, MINUTE), (None, "device_id", "n")):
        steps = None if function == "count" else ("value",)
        engines.compare(AggregateQuery(EventQuery(ws, **selection), function, steps, bucket, group_by))


def test_known_answers(engines: Engines) -> None:
    ws = fill(engines, EVENTS)
    query = AggregateQuery(EventQuery(ws, sources=("readings",)), "sum", ("value",), HOUR, "device_id")
    rows = {(r.bucket_us, r.group): (r.value, r.count) for r in engines.compare(query)}
    assert rows[(T0, "d-1")] == (3.5, 2)
    assert rows[(T0 + HOUR, "d-2")] == (-4, 1)
    assert rows[(T0 + 2 * HOUR, "d-4")] == (2**63, 2)
    assert type(rows[(T0 + 2 * HOUR, "d-4")][0]) is int  # exact: beyond a 64-bit integer
    flags = AggregateQuery(EventQuery(ws), "count", None, None, "flag")
    assert [(r.group, r.count) for r in engines.compare(flags)] == [(None, 18), (True, 2)]
    devices = AggregateQuery(EventQuery(ws), "sum", ("value",), None, "device_id")
    groups = [r.group for r in engines.compare(devices)]
    assert groups[:4] == [True, 1, 1.0, "d-1"]  # one order whichever engine answers
    assert [type(g) for g in groups[:3]] == [bool, int, float]


def test_paths_duckdb_reads_differently_stay_in_sqlite(engines: Engines) -> None:
    ws = fill(engines, [(0, "s", {"*": 4, "a": 1}, None)])
    query = AggregateQuery(EventQuery(ws), "sum", ("*",), None, None)
    engines.engines.clear()
    assert [(r.value, r.count) for r in engines.duck.aggregate(query)] == [(4, 1)]
    assert engines.engines == ["sqlite"]


def test_time_ranges_and_empty_selections(engines: Engines) -> None:
    ws = fill(engines, EVENTS)
    for start, end in ((T0, T0 + HOUR), (T0 + 61 * MINUTE, T0 + 135 * MINUTE), (T0 + 500 * HOUR, None)):
        query = AggregateQuery(EventQuery(ws, from_us=start, to_us=end), "avg", ("value",), MINUTE, "device_id")
        if start > T0 + HOUR * 10:
            assert engines.duck.aggregate(query) == []
        else:
            engines.compare(query)
    engines.compare(AggregateQuery(EventQuery(ws, tags={"device_id": "none"}), "max", ("value",), None, None))


numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
    | st.integers(min_value=-100, max_value=100)
)
values = numbers | st.none() | st.booleans() | st.text(max_size=4) | st.lists(numbers, max_size=2)
tag_values = st.sampled_from(["a", "b", "it's", "ü"]) | st.integers(-3, 3) | st.booleans()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 180), values, st.none() | tag_values, st.sampled_from(["s", "t"])),
        min_size=1,
        max_size=25,
    ),
    function=st.sampled_from(FUNCTIONS),
    bucket=st.sampled_from([None, MINUTE, HOUR]),
    selected=st.none() | tag_values,
)
def test_random_logs_agree(
    engines: Engines,
    rows: list[tuple[int, Any, Any, str]],
    function: str,
    bucket: int | None,
    selected: Any,
) -> None:
    rows = sorted(rows, key=lambda row: row[0])  # the log's time never goes backwards
    events = [
        (minute, source, {"value": value}, None if tag is None else dump_json({"g": tag}))
        for minute, value, tag, source in rows
    ]
    ws = fill(engines, events)
    steps = None if function == "count" else ("value",)
    tags = None if selected is None else {"g": selected}
    engines.compare(AggregateQuery(EventQuery(ws, tags=tags), function, steps, bucket, "g"))
    engines.compare(AggregateQuery(EventQuery(ws, sources=("s",)), function, steps, bucket, None))
