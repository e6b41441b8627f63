"""Aggregations over selected events, in SQL (SPEC §3.3).

Values come from ``json_extract(payload, path)``; only numbers count (a string or a
missing value is skipped, never read as 0). Percentiles are nearest-rank, computed
with window functions.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from iotman.storage.ports import AggregateQuery, AggregateRow
from iotman.storage.sqlite.event_reader import position_bounds, selection
from iotman.storage.sqlite.json_render import json_path
from iotman.storage.sqlite.tag_index import tag_expression

__all__ = ["aggregate"]

_SIMPLE = {"sum": "sum", "avg": "avg", "min": "min", "max": "max"}
_PERCENT = {"p50": 50, "p95": 95, "p99": 99}


def aggregate(conn: sqlite3.Connection, query: AggregateQuery) -> list[AggregateRow]:
    bounds = position_bounds(conn, query.events)
    if bounds is None:
        return []
    hint, terms, params = selection(query.events.sources, query.events.tags)
    where = " AND ".join(["pos >= ?", "pos <= ?", *terms])
    params = [bounds[0], bounds[1], *params]
    bucket = f"(received_at_us / {int(query.bucket_us)}) * {int(query.bucket_us)}" if query.bucket_us else "NULL"
    group = tag_expression(query.group_by) if query.group_by else "NULL"
    if query.function == "count":
        sql = (
            f"SELECT {bucket} AS b, {group} AS g, NULL, count(*) FROM events{hint} WHERE {where}"  # noqa: S608
            " GROUP BY b, g ORDER BY b, g"
        )
        return _rows(conn.execute(sql, params))
    assert query.value_steps is not None
    numbers = (
        f"SELECT b, g, v FROM (SELECT {bucket} AS b, {group} AS g, json_extract(payload, ?) AS v"  # noqa: S608
        f" FROM events{hint} WHERE {where}) WHERE typeof(v) IN ('integer', 'real')"
    )
    params = [json_path(query.value_steps), *params]
    if query.function in _SIMPLE:
        sql = f"SELECT b, g, {_SIMPLE[query.function]}(v), count(*) FROM ({numbers}) GROUP BY b, g ORDER BY b, g"  # noqa: S608
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
        f" SELECT b, g, v, n FROM r WHERE rn = max(1, (n * {percent} + 99) / 100) ORDER BY b, g"
    )
    return _rows(conn.execute(sql, params))


def _rows(cursor: sqlite3.Cursor) -> list[AggregateRow]:
    out: list[AggregateRow] = []
    row: Any
    for row in cursor:
        out.append(AggregateRow(row[0], row[1], row[2], row[3]))
    return out
