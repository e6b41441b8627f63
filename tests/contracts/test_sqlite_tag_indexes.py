"""SQLite keeps only the tag indexes that some selection is driven by (each costs ingest time)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from iotman.storage.ports import AppendBatch, EventQuery
from iotman.storage.sqlite import SqliteStore
from iotman.storage.sqlite.event_reader import occupied_bounds
from iotman.storage.sqlite.tag_index import driving_index, index_name

T0 = 1_795_428_000_000_000


def indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND name LIKE 'events_tag_%'")
        return {r[0] for r in rows}


def test_the_driving_index_prefers_a_value_match_then_the_first_key() -> None:
    assert driving_index({"b": "*", "a": "*"}) == ("a", True)
    assert driving_index({"b": "x", "a": "*"}) == ("b", False)
    assert driving_index({"b": "x", "a": 1}) == ("a", False)


def test_only_the_indexes_selections_use_are_built_and_they_answer(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(str(path))
    store.open()
    try:
        ws = store.create_workspace("acme", "uuid-acme", T0).id
        tags = ['{"kind":"reading","room":"a"}', '{"kind":"alarm"}', None] * 3
        store.append(AppendBatch(ws, "readings", [str(i) for i in range(9)], "{}", T0, tags=tags))
        store.ensure_tag_index({"kind": "reading", "room": "*"})
        assert indexes(path) == {index_name("kind", False)}
        selected = store.read_events(EventQuery(ws, tags={"kind": "reading", "room": "*"}))
        assert [r.payload for r in selected] == ["6", "3", "0"]
        assert indexes(path) == {index_name("kind", False)}
        # a presence selection needs the other index; a read builds it when nothing asked before
        assert [r.payload for r in store.read_events(EventQuery(ws, tags={"room": "*"}, limit=2))] == ["6", "3"]
        assert indexes(path) == {index_name("kind", False), index_name("room", True)}
    finally:
        store.close()


def test_aggregation_bounds_are_the_selections_first_and_last_positions(tmp_path: Path) -> None:
    """DuckDB scans a chunk per 65,536 positions: the bounds must not span other sources' events."""
    path = tmp_path / "store.db"
    store = SqliteStore(str(path))
    store.open()
    try:
        ws = store.create_workspace("acme", "uuid-acme", T0).id
        store.append(AppendBatch(ws, "a", ["1"] * 10, "{}", T0, tags=['{"k":"x"}'] * 10))
        store.append(AppendBatch(ws, "b", ["2"] * 10, "{}", T0, tags=['{"k":"y"}'] * 10))
        store.append(AppendBatch(ws, "a", ["3"] * 10, "{}", T0))
        store.ensure_tag_index({"k": "y"})
        store.ensure_tag_index({"k": "*"})
        base = ws << 40
        everything = (base + 1, base + (1 << 40) - 1)
        with sqlite3.connect(path) as conn:
            assert occupied_bounds(conn, everything) == (base + 1, base + 30)
            assert occupied_bounds(conn, everything, ("b",)) == (base + 11, base + 20)
            assert occupied_bounds(conn, everything, ("a",)) == (base + 1, base + 30)
            assert occupied_bounds(conn, everything, ("c",)) is None
            assert occupied_bounds(conn, everything, None, {"k": "y"}) == (base + 11, base + 20)
            assert occupied_bounds(conn, everything, None, {"k": "*"}) == (base + 1, base + 20)
            assert occupied_bounds(conn, (base + 12, base + 15), ("b",)) == (base + 12, base + 15)
            assert occupied_bounds(conn, (base + 21, base + 30), ("b",)) is None
    finally:
        store.close()
