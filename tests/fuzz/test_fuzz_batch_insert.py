"""Fuzzing the one-statement batch insert: any JSON texts come back from the store unchanged."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotman.connect.json_codec import dump_json
from iotman.storage.ports import AppendBatch, EventQuery
from iotman.storage.sqlite import SqliteStore
from iotman.storage.sqlite.event_appender import SINGLE_ROW_MAX

T0 = 1_795_428_000_000_000
SLUGS = itertools.count()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
texts = json_values.map(dump_json)


@pytest.fixture(scope="module")
def store() -> Iterator[SqliteStore]:
    with tempfile.TemporaryDirectory() as tmp:
        s = SqliteStore(str(Path(tmp) / "fuzz.db"))
        s.open()
        yield s
        s.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payloads=st.lists(texts, min_size=SINGLE_ROW_MAX + 1, max_size=40),
    data=st.data(),
)
def test_any_batch_comes_back_unchanged(store: SqliteStore, payloads: list[str], data: st.DataObject) -> None:
    count = len(payloads)
    tags = data.draw(st.none() | st.lists(st.none() | texts, min_size=count, max_size=count))
    metadata = data.draw(st.none() | st.lists(texts, min_size=count, max_size=count))
    n = next(SLUGS)
    ws = store.create_workspace(f"w{n}", f"uuid-{n}", T0).id
    result = store.append(AppendBatch(ws, "s", payloads, '{"m":1}', T0, tags=tags, event_metadata=metadata))
    rows = store.read_events(EventQuery(ws, descending=False, limit=count + 1))
    assert [r.payload for r in rows] == payloads
    assert [r.tags for r in rows] == (tags or [None] * count)
    assert [r.metadata for r in rows] == (metadata or ['{"m":1}'] * count)
    assert [r.id for r in rows] == result.ids
