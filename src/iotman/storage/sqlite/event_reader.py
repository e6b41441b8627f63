"""Reading the log: seq ranges, time bounds by binary search, per-source index."""

from __future__ import annotations

import sqlite3

from iotman.storage.ports import SEQ_BITS, EventQuery, StoredEvent

__all__ = ["count_events", "first_pos_at_or_after", "last_seq", "read_events"]

_MAX_SEQ = (1 << SEQ_BITS) - 1
_COLUMNS = "pos, id, source, received_at_us, payload, metadata, tags"


def first_pos_at_or_after(conn: sqlite3.Connection, lo: int, hi: int, time_us: int) -> int | None:
    """Smallest existing pos in [lo, hi] whose received_at >= time_us.

    received_at never decreases along a workspace's log (the writer clamps it), so
    a binary search over positions needs no time index.
    """
    best: int | None = None
    low, high = lo, hi + 1
    while low < high:
        mid = (low + high) // 2
        row = conn.execute(
            "SELECT pos, received_at_us FROM events WHERE pos >= ? AND pos <= ? ORDER BY pos LIMIT 1", (mid, hi)
        ).fetchone()
        if row is None:
            high = mid
        elif row[1] >= time_us:
            best = row[0]
            high = mid
        else:
            low = row[0] + 1
    return best


def read_events(conn: sqlite3.Connection, query: EventQuery) -> list[StoredEvent]:
    base = query.workspace_id << SEQ_BITS
    lo = base + max(1, (query.after_seq or 0) + 1)
    hi = base + min(_MAX_SEQ, (query.before_seq - 1) if query.before_seq is not None else _MAX_SEQ)
    if query.from_us is not None:
        start = first_pos_at_or_after(conn, lo, hi, query.from_us)
        if start is None:
            return []
        lo = start
    if query.to_us is not None:
        end = first_pos_at_or_after(conn, lo, hi, query.to_us)
        if end is not None:
            hi = end - 1
    if lo > hi or query.limit <= 0:
        return []
    order = "DESC" if query.descending else "ASC"
    if query.source is None:
        sql = f"SELECT {_COLUMNS} FROM events WHERE pos >= ? AND pos <= ? ORDER BY pos {order} LIMIT ?"  # noqa: S608
        params: tuple[object, ...] = (lo, hi, query.limit)
    else:
        sql = (
            f"SELECT {_COLUMNS} FROM events INDEXED BY events_by_source"  # noqa: S608
            f" WHERE source = ? AND pos >= ? AND pos <= ? ORDER BY pos {order} LIMIT ?"
        )
        params = (query.source, lo, hi, query.limit)
    return [
        StoredEvent(row[0] - base, row[1], row[2], row[3], row[4], row[5], row[6]) for row in conn.execute(sql, params)
    ]


def last_seq(conn: sqlite3.Connection, workspace_id: int) -> int:
    base = workspace_id << SEQ_BITS
    row = conn.execute(
        "SELECT pos FROM events WHERE pos >= ? AND pos <= ? ORDER BY pos DESC LIMIT 1", (base, base + _MAX_SEQ)
    ).fetchone()
    return 0 if row is None else int(row[0]) - base


def count_events(conn: sqlite3.Connection, workspace_id: int) -> int:
    base = workspace_id << SEQ_BITS
    row = conn.execute("SELECT count(*) FROM events WHERE pos >= ? AND pos <= ?", (base, base + _MAX_SEQ)).fetchone()
    return int(row[0])
