"""View rows: folding appended events into them (writer thread), reading them.

The fold runs inside the append transaction, after the events are inserted: each
view gives every event's key; the current rows of all views' keys are read with one
statement, each view folds all its keys of the batch in one call (a ``count`` adds n,
a ``last`` takes the last one, a JSONata reducer runs the batch in one evaluation),
and the changed rows of all views are written back with one statement. A view that fails on an event
counts it and leaves the row as it was; the append itself always goes through.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson

from iotman.storage.ports import FoldBatch, FoldGroup, StoredEvent, ViewFold, ViewRow

__all__ = [
    "compute_folds",
    "delete_rows",
    "fold_views",
    "plan_folds",
    "read_row",
    "read_rows",
    "replace_rows",
    "start_folds",
    "write_folds",
]

# Both statements take and give the rows of every view of the batch as one JSON text, so
# the writer steps SQLite twice for a batch, whatever its views and keys (each step hands
# the GIL over and must wait to get it back; see event_appender). Values travel as JSON
# strings, so their text comes back unchanged.
log = logging.getLogger("iotman.views")

# CROSS JOIN keeps the batch's keys the outer loop: each is one primary-key lookup (a plain
# JOIN lets the planner walk the workspace's rows and rescan the keys for every one).
_CURRENT = (
    "SELECT json_group_array(json_array(r.view, r.key, r.value))"
    " FROM json_each(?2) AS wanted CROSS JOIN view_rows AS r"
    " ON r.ws_id = ?1 AND r.view = wanted.value ->> 0 AND r.key = wanted.value ->> 1"
)
_UPSERT = (
    "INSERT INTO view_rows (ws_id, view, key, value, updated_at_us, seq)"
    " SELECT ?1, value ->> 0, value ->> 1, value ->> 2, ?2, value ->> 3 FROM json_each(?3) WHERE true"
    " ON CONFLICT (ws_id, view, key) DO UPDATE SET value = excluded.value,"
    " updated_at_us = excluded.updated_at_us, seq = excluded.seq"
)


def _storable(key: str) -> bool:
    """Whether SQLite can hold ``key`` as text (a lone surrogate cannot be UTF-8); views skip
    such keys themselves, this keeps a view that does not from failing the append."""
    try:
        key.encode()
    except UnicodeEncodeError:
        log.warning("a view gave a key that is not valid Unicode; the event is not folded")
        return False
    return True


def _json_text(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # a lone surrogate in a key or value: escaped, so the statement still runs
        return json.dumps(value, separators=(",", ":"))


def _current(conn: sqlite3.Connection, ws: int, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    found = conn.execute(_CURRENT, (ws, _json_text(wanted))).fetchone()[0]
    return {(view, key): value for view, key, value in orjson.loads(found)} if found else {}


Planned = tuple[FoldBatch, list[tuple[ViewFold, list[FoldGroup]]]]
"""A batch with, for each view that has keys in it, its groups (current values read)."""

# Batches at least this large fold on the fold thread while the writer inserts them: the
# insert (SQLite) and the reducers (jlens) both run without the GIL, so they overlap.
# Smaller ones fold inline: the hand-over would cost more than it saves.
OVERLAP_MIN_EVENTS = 256
_fold_thread: ThreadPoolExecutor | None = None
_fold_thread_lock = threading.Lock()


def fold_views(
    conn: sqlite3.Connection,
    ws: int,
    folds: Iterable[ViewFold],
    events: list[StoredEvent],
    now_us: int,
    payload_values: list[Any] | None = None,
) -> None:
    """Fold ``events`` into ``folds``, all on the caller's connection and thread."""
    planned = plan_folds(conn, ws, folds, events, payload_values)
    write_folds(conn, ws, compute_folds(planned), now_us)


def plan_folds(
    conn: sqlite3.Connection,
    ws: int,
    folds: Iterable[ViewFold],
    events: list[StoredEvent],
    payload_values: list[Any] | None = None,
) -> Planned:
    """Each view's keys of the batch, and the current rows of all of them (one statement).

    Needs no row of the batch's events: it can run before they are inserted."""
    batch = FoldBatch(events, payload_values)
    keyed: list[tuple[ViewFold, dict[str, list[int]]]] = []
    for fold in folds:
        if "\x00" in fold.name:  # names travel through SQLite's JSON functions, which stop at a NUL
            log.error("view %r has a NUL in its name; it is not folded", fold.name)
            continue
        try:
            by_key: dict[str, list[int]] = {}
            for position, key in enumerate(fold.keys(batch)):
                if key is not None and (key.isascii() or _storable(key)):
                    by_key.setdefault(key, []).append(position)
        except MemoryError:
            raise
        except Exception:  # a view that breaks its contract must not take the append down with it
            log.exception("view %r failed on a batch; its rows are unchanged", fold.name)
            continue
        if by_key:
            keyed.append((fold, by_key))
    if not keyed:
        return batch, []
    current = _current(conn, ws, [(fold.name, key) for fold, by_key in keyed for key in by_key])
    return batch, [
        (fold, [FoldGroup(key, current.get((fold.name, key)), positions) for key, positions in by_key.items()])
        for fold, by_key in keyed
    ]


def compute_folds(planned: Planned) -> list[tuple[str, str, str, int]]:
    """The changed rows (view, key, value, seq): the views' own work, no database."""
    batch, views = planned
    changed: list[tuple[str, str, str, int]] = []
    for fold, groups in views:
        try:
            outcomes = fold.fold(batch, groups)
            if len(outcomes) != len(groups):
                raise ValueError(f"{len(outcomes)} outcomes for {len(groups)} keys")
        except MemoryError:
            raise
        except Exception:  # as above: this view's rows stay as they were
            log.exception("view %r failed on a batch; its rows are unchanged", fold.name)
            continue
        changed.extend(
            (fold.name, group.key, outcome.value, outcome.seq)
            for group, outcome in zip(groups, outcomes, strict=True)
            if outcome.value is not None
        )
    return changed


def start_folds(planned: Planned) -> Future[list[tuple[str, str, str, int]]]:
    """``compute_folds`` on the fold thread for a large batch (the caller goes on with its
    insert meanwhile), inline for a small one. One fold thread: batches fold in order."""
    global _fold_thread
    batch, views = planned
    if views and len(batch.events) >= OVERLAP_MIN_EVENTS:
        with _fold_thread_lock:
            if _fold_thread is None:
                _fold_thread = ThreadPoolExecutor(1, thread_name_prefix="iotman-view-fold")
        return _fold_thread.submit(compute_folds, planned)
    done: Future[list[tuple[str, str, str, int]]] = Future()
    try:
        done.set_result(compute_folds(planned) if views else [])
    except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
        done.set_exception(exc)
    return done


def write_folds(conn: sqlite3.Connection, ws: int, changed: list[tuple[str, str, str, int]], now_us: int) -> None:
    """Upsert the changed rows of all views with one statement."""
    if changed:
        conn.execute(_UPSERT, (ws, now_us, _json_text(changed)))


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
