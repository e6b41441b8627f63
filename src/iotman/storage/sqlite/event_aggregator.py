"""Aggregations over selected events, in SQL (SPEC §3.3).

Values come from ``json_extract(payload, path)``; only JSON numbers count (a string,
a boolean or a missing value is skipped, never read as 0). Percentiles are
nearest-rank, computed with window functions. Groups are the tag's JSON text, parsed
here, so ``true`` stays a boolean. Large ranges go to DuckDB instead
(:mod:`analytics_sql`); :func:`finish` gives both engines' rows one shape and order.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from iotman.storage.ports import AggregateQuery, AggregateRow
from iotman.storage.sqlite.event_reader import selection
from iotman.storage.sqlite.json_render import json_path
from iotman.storage.sqlite.tag_index import tag_json_path

__all__ = ["aggregate", "finish"]

_INTEGER = re.compile(r"-?[0-9]+")
_SIMPLE = {"sum": "sum", "avg": "avg", "min": "min", "max": "max"}
_PERCENT = {"p50": 50, "p95": 95, "p99": 99}


def aggregate(conn: sqlite3.Connection, query: AggregateQuery, bounds: tuple[int, int]) -> list[AggregateRow]:
    """``query`` over positions ``bounds`` (inclusive), in the caller's read transaction."""
    hint, terms, params = selection(query.events.sources, query.events.tags)
    where = " AND ".join(["pos >= ?", "pos <= ?", *terms])
    params = [bounds[0], bounds[1], *params]
    bucket = f"(received_at_us / {int(query.bucket_us)}) * {int(query.bucket_us)}" if query.bucket_us else "NULL"
    group = f"(tags -> '{tag_json_path(query.group_by)}')" if query.group_by else "NULL"
    if query.function == "count":
        sql = (
            f"SELECT {bucket} AS b, {group} AS g, NULL, count(*) FROM events{hint} WHERE {where}"  # noqa: S608
            " GROUP BY b, g"
        )
        return _rows(conn.execute(sql, params))
    assert query.value_steps is not None
    numbers = (
        f"SELECT b, g, v FROM (SELECT {bucket} AS b, {group} AS g, json_type(payload, ?) AS ty,"  # noqa: S608
        f" json_extract(payload, ?) AS v FROM events{hint} WHERE {where}) WHERE ty IN ('integer', 'real')"
    )
    path = json_path(query.value_steps)
    params = [path, path, *params]
    if query.function in _SIMPLE:
        sql = f"SELECT b, g, {_SIMPLE[query.function]}(v), count(*) FROM ({numbers}) GROUP BY b, g"  # noqa: S608
        try:
            return _rows(conn.execute(sql, params))
        except sqlite3.OperationalError as exc:
            if "overflow" not in str(exc):
                raise
            sql = sql.replace("sum(v)", "total(v)")  # integer overflow: sum as floats
            return _rows(conn.execute(sql, params))
    percent = _PERCENT[query.function]
    sql = (
        f"WITH x AS ({numbers}), r AS (SELECT b, g, v, row_number() OVER (PARTITION BY b, g ORDER BY v) AS rn,"  # noqa: S608
        " count(*) OVER (PARTITION BY b, g) AS n FROM x)"
        f" SELECT b, g, v, n FROM r WHERE rn = max(1, (n * {percent} + 99) / 100)"
    )
    return _rows(conn.execute(sql, params))


def _rows(cursor: sqlite3.Cursor) -> list[AggregateRow]:
    return finish(list(cursor))


def finish(rows: Iterable[Sequence[Any]]) -> list[AggregateRow]:
    """Rows of (bucket, group JSON text, value, count) -> AggregateRows in bucket,
    then group order (no group first, then booleans, numbers, strings)."""
    out = [AggregateRow(row[0], _group(row[1]), _number(row[2]), row[3]) for row in rows]
    out.sort(key=_order)
    return out


def _group(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _number(value: Any) -> Any:
    """A value as SQLite or DuckDB gave it: a number, or number text (``"40"``, ``"2.5"``, ``"inf"``)."""
    if not isinstance(value, str):
        return value
    if _INTEGER.fullmatch(value):
        return int(value)  # exact at any size (orjson would round past 64 bits)
    try:
        number = orjson.loads(value)
    except orjson.JSONDecodeError:
        return float(value)  # DuckDB's inf / nan renderings
    return number if isinstance(number, int | float) and not isinstance(number, bool) else float(value)


def _order(row: AggregateRow) -> tuple[Any, ...]:
    group = row.group
    if group is None:
        rank: tuple[Any, ...] = (0,)
    elif isinstance(group, bool):
        rank = (1, group)
    elif isinstance(group, int | float):
        rank = (2, group, isinstance(group, float))  # 1 before 1.0: one order whichever engine answered
    else:
        rank = (3, str(group))
    return (row.bucket_us is not None, row.bucket_us or 0, rank)
