"""Reading the log: seq ranges, time bounds by binary search, per-source index."""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from iotman.storage.ports import SEQ_BITS, EventQuery, RenderedText, RenderSpec, StoredEvent
from iotman.storage.sqlite.json_render import render_sql
from iotman.storage.sqlite.tag_index import driving_index, index_name, tag_expression

__all__ = [
    "count_events",
    "first_pos_at_or_after",
    "last_seq",
    "occupied_bounds",
    "position_bounds",
    "events_at",
    "read_events",
    "read_rendered",
    "read_rendered_text",
]

_MAX_SEQ = (1 << SEQ_BITS) - 1
_COLUMNS = "pos, id, source, received_at_us, payload, metadata, tags"
T = TypeVar("T")


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


def position_bounds(conn: sqlite3.Connection, query: EventQuery) -> tuple[int, int] | None:
    """The pos range [lo, hi] the query's cursors and time bounds allow, or None if empty."""
    base = query.workspace_id << SEQ_BITS
    lo = base + max(1, (query.after_seq or 0) + 1)
    hi = base + min(_MAX_SEQ, (query.before_seq - 1) if query.before_seq is not None else _MAX_SEQ)
    if query.from_us is not None:
        start = first_pos_at_or_after(conn, lo, hi, query.from_us)
        if start is None:
            return None
        lo = start
    if query.to_us is not None:
        end = first_pos_at_or_after(conn, lo, hi, query.to_us)
        if end is not None:
            hi = end - 1
    return None if lo > hi else (lo, hi)


def selection(sources: tuple[str, ...] | None, tags: dict[str, Any] | None) -> tuple[str, list[str], list[Any]]:
    """(index hint, WHERE terms, parameters) selecting events by sources and tags.

    With tags, the index of one tag drives the scan (a value match before a "has
    tag"); the other tags and the sources filter. Without tags, one source uses the
    per-source index.
    """
    where: list[str] = []
    params: list[Any] = []
    hint = ""
    if tags:
        driving, presence = driving_index(tags)
        hint = f" INDEXED BY {index_name(driving, presence)}"
        for key in sorted(tags):
            if tags[key] == "*":
                where.append(f"{tag_expression(key)} IS NOT NULL")
            else:
                where.append(f"{tag_expression(key)} = ?")
                params.append(tags[key])
        if sources is not None:
            where.append(f"source IN ({', '.join('?' * len(sources))})")
            params.extend(sources)
    elif sources is not None and len(sources) == 1:
        hint = " INDEXED BY events_by_source"
        where.append("source = ?")
        params.append(sources[0])
    elif sources is not None:
        where.append(f"source IN ({', '.join('?' * len(sources))})")
        params.extend(sources)
    return hint, where, params


def occupied_bounds(
    conn: sqlite3.Connection,
    bounds: tuple[int, int],
    sources: tuple[str, ...] | None = None,
    tags: dict[str, Any] | None = None,
) -> tuple[int, int] | None:
    """``bounds`` narrowed to the first and last selected positions inside it (None if none).

    Two index probes per source (or one pair through the driving tag index), so a
    selection of one source among many, or of a tag, is not bounded by the events of
    the others: a range of positions costs DuckDB a scan per chunk whatever it holds.
    Further tags do not narrow (the range is a superset of the selection).
    """
    probes: list[tuple[str, str, list[Any]]]
    if tags:
        key, presence = driving_index(tags)
        term = f"{tag_expression(key)} IS NOT NULL" if presence else f"{tag_expression(key)} = ?"
        probes = [(f" INDEXED BY {index_name(key, presence)}", term, [] if presence else [tags[key]])]
    elif sources:
        probes = [(" INDEXED BY events_by_source", "source = ?", [source]) for source in sources]
    else:
        probes = [("", "1", [])]
    firsts: list[int] = []
    lasts: list[int] = []
    for hint, term, params in probes:
        for order, found in (("ASC", firsts), ("DESC", lasts)):
            sql = f"SELECT pos FROM events{hint} WHERE {term} AND pos >= ? AND pos <= ? ORDER BY pos {order} LIMIT 1"  # noqa: S608
            row = conn.execute(sql, [*params, *bounds]).fetchone()
            if row is not None:
                found.append(int(row[0]))
    if not firsts:
        return None
    return min(firsts), max(lasts)


def read_events(conn: sqlite3.Connection, query: EventQuery) -> list[StoredEvent]:
    def event(row: Any, base: int) -> StoredEvent:
        return StoredEvent(row[0] - base, row[1], row[2], row[3], row[4], row[5], row[6])

    return _read(conn, query, _COLUMNS, [], event)


def events_at(conn: sqlite3.Connection, ws: int, seqs: list[int]) -> list[StoredEvent]:
    """The events at these seqs (those that exist), in log order."""
    base = ws << SEQ_BITS
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE pos IN (SELECT ? + value FROM json_each(?)) ORDER BY pos",  # noqa: S608
        (base, orjson.dumps(seqs).decode()),
    ).fetchall()
    return [StoredEvent(r[0] - base, r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def read_rendered(conn: sqlite3.Connection, query: EventQuery, spec: RenderSpec) -> list[tuple[int, str]]:
    """(seq, JSON text) of each selected event, rendered by SQLite's JSON functions."""
    params: list[Any] = []
    expression = render_sql(spec, params, query.workspace_id << SEQ_BITS)
    return _read(conn, query, f"pos, {expression}", params, lambda row, base: (row[0] - base, row[1]))


def read_rendered_text(conn: sqlite3.Connection, query: EventQuery, spec: RenderSpec) -> RenderedText:
    """The selected events rendered and joined by newlines in SQLite, in one step.

    One ``sqlite3_step`` returns the whole chunk: Python does not handle a row per
    event, and the GIL is released once for the chunk instead of once per row (with
    the event loop busy sending, taking it back costs up to the switch interval).
    ``group_concat`` keeps the order of its input here: an aggregate over a
    subquery with ORDER BY is not flattened, so the rows arrive in that order (the
    store contract tests check it on the SQLite in use).
    """
    params: list[Any] = []
    base = query.workspace_id << SEQ_BITS
    expression = render_sql(spec, params, base)
    sources = query.sources
    if (not query.tags and sources is not None and len(sources) > 1) or query.limit <= 0:
        rows = read_rendered(conn, query, spec)
        return RenderedText(len(rows), rows[-1][0] if rows else None, "\n".join(text for _, text in rows))
    bounds = position_bounds(conn, query)
    if bounds is None:
        return RenderedText(0, None, "")
    hint, terms, where_params = selection(sources, query.tags)
    where = " AND ".join(["pos >= ?", "pos <= ?", *terms])
    order, last = ("DESC", "min") if query.descending else ("ASC", "max")
    sql = (
        f"SELECT count(*), {last}(pos), group_concat(line, char(10)) FROM"  # noqa: S608
        f" (SELECT pos, {expression} AS line FROM events{hint} WHERE {where} ORDER BY pos {order} LIMIT ?)"
    )
    count, last_pos, text = conn.execute(sql, [*params, *bounds, *where_params, query.limit]).fetchone()
    return RenderedText(int(count), None if last_pos is None else int(last_pos) - base, text or "")


def _read(
    conn: sqlite3.Connection,
    query: EventQuery,
    columns: str,
    column_params: list[Any],
    make: Callable[[Any, int], T],
) -> list[T]:
    bounds = position_bounds(conn, query)
    if bounds is None or query.limit <= 0:
        return []
    lo, hi = bounds
    base = query.workspace_id << SEQ_BITS
    order = "DESC" if query.descending else "ASC"
    sources = query.sources

    def select(sources: tuple[str, ...] | None, tags: dict[str, Any] | None) -> list[T]:
        hint, terms, params = selection(sources, tags)
        where = " AND ".join(["pos >= ?", "pos <= ?", *terms])
        sql = f"SELECT {columns} FROM events{hint} WHERE {where} ORDER BY pos {order} LIMIT ?"  # noqa: S608
        return [make(row, base) for row in conn.execute(sql, [*column_params, lo, hi, *params, query.limit])]

    if not query.tags and sources is not None and len(sources) > 1:
        # one ordered index range per source, merged: no sort of every match
        runs = [select((source,), None) for source in sources]
        merged = heapq.merge(*runs, key=_pos_of, reverse=query.descending)
        return list(itertools.islice(merged, query.limit))
    return select(sources, query.tags)


def _pos_of(item: Any) -> int:
    return item.seq if isinstance(item, StoredEvent) else int(item[0])


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
