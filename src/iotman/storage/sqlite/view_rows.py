"""View rows: folding appended events into them (writer thread), reading them.

The fold runs inside the append transaction, after the events are inserted: each
view gives every event's key; the batch's keys are read once, each key is folded
with all its events of the batch in one call (a ``count`` adds n, a ``last`` takes
the last one), and the changed rows are written back. A view that fails on an event
counts it and leaves the row as it was; the append itself always goes through.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable

import orjson

from iotman.storage.ports import StoredEvent, ViewFold, ViewRow

__all__ = ["delete_rows", "fold_views", "read_row", "read_rows", "replace_rows"]

# Both statements take and give the batch's rows as one JSON text, so the writer steps SQLite
# once for all keys (each step hands the GIL over and must wait to get it back; see
# event_appender). Values travel as JSON strings, so their text comes back unchanged.
log = logging.getLogger("iotman.views")

_CURRENT = (
    "SELECT json_group_object(key, value) FROM view_rows"
    " WHERE ws_id = ?1 AND view = ?2 AND key IN (SELECT value FROM json_each(?3))"
)
_UPSERT = (
    "INSERT INTO view_rows (ws_id, view, key, value, updated_at_us, seq)"
    " SELECT ?1, ?2, value ->> 0, value ->> 1, ?3, value ->> 2 FROM json_each(?4) WHERE true"
    " ON CONFLICT (ws_id, view, key) DO UPDATE SET value = excluded.value,"
    " updated_at_us = excluded.updated_at_us, seq = excluded.seq"
)


def _current(conn: sqlite3.Connection, ws: int, view: str, keys: list[str]) -> dict[str, str]:
    found = conn.execute(_CURRENT, (ws, view, orjson.dumps(keys).decode())).fetchone()[0]
    rows: dict[str, str] = orjson.loads(found) if found else {}
    return rows


def fold_views(
    conn: sqlite3.Connection, ws: int, folds: Iterable[ViewFold], events: list[StoredEvent], now_us: int
) -> None:
    for fold in folds:
        try:
            changed = _changes(conn, ws, fold, events)
            if changed:
                conn.execute(_UPSERT, (ws, fold.name, now_us, orjson.dumps(changed).decode()))
        except (sqlite3.DatabaseError, MemoryError):
            raise  # the store itself failed: the transaction cannot go on
        except Exception:  # a view that breaks its contract must not take the append down with it
            log.exception("view %r failed on a batch; its rows are unchanged", fold.name)


def _changes(
    conn: sqlite3.Connection, ws: int, fold: ViewFold, events: list[StoredEvent]
) -> list[tuple[str, str, int]]:
    by_key: dict[str, list[StoredEvent]] = {}
    for event in events:
        key = fold.key(event)
        if key is not None:
            by_key.setdefault(key, []).append(event)
    if not by_key:
        return []
    current = _current(conn, ws, fold.name, list(by_key))
    changed = []
    for key, key_events in by_key.items():
        outcome = fold.fold(current.get(key), key_events)
        if outcome.value is not None:
            changed.append((key, outcome.value, outcome.seq))
    return changed


def read_row(conn: sqlite3.Connection, ws: int, view: str, key: str) -> ViewRow | None:
    row = conn.execute(
        "SELECT key, value, updated_at_us, seq FROM view_rows WHERE ws_id = ? AND view = ? AND key = ?",
        (ws, view, key),
    ).fetchone()
    return None if row is None else ViewRow(*row)


def read_rows(
    conn: sqlite3.Connection, ws: int, view: str, prefix: str, after: str | None, limit: int
) -> list[ViewRow]:
    """Keys starting with ``prefix`` (compared as text, so any character is literal), in order."""
    terms = ["ws_id = ?", "view = ?"]
    params: list[object] = [ws, view]
    if prefix:
        # a key range, not LIKE: no wildcards to escape, and it is one primary-key range
        terms.append("key >= ?")
        params.append(prefix)
        end = _successor(prefix)
        if end is not None:
            terms.append("key < ?")
            params.append(end)
    if after is not None:
        terms.append("key > ?")
        params.append(after)
    sql = f"SELECT key, value, updated_at_us, seq FROM view_rows WHERE {' AND '.join(terms)} ORDER BY key LIMIT ?"  # noqa: S608
    return [ViewRow(*row) for row in conn.execute(sql, [*params, limit])]


def _successor(prefix: str) -> str | None:
    """The least text greater than every text starting with ``prefix`` (None: there is none).

    SQLite compares text as UTF-8 bytes, which orders like code points.
    """
    while prefix:
        last = ord(prefix[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def replace_rows(conn: sqlite3.Connection, ws: int, shadow: str, view: str) -> None:
    """The rows of ``shadow`` become those of ``view`` (whose old rows go), in the caller's transaction."""
    delete_rows(conn, ws, view)
    conn.execute("UPDATE view_rows SET view = ? WHERE ws_id = ? AND view = ?", (view, ws, shadow))


def delete_rows(conn: sqlite3.Connection, ws: int, view: str | None = None) -> None:
    if view is None:
        conn.execute("DELETE FROM view_rows WHERE ws_id = ?", (ws,))
    else:
        conn.execute("DELETE FROM view_rows WHERE ws_id = ? AND view = ?", (ws, view))
