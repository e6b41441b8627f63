"""The DuckDB query of an aggregation over the SQLite log (decision 0006).

SQLite selects the events (position range, tag index, sources) through DuckDB's
``sqlite_query``, in a few position chunks DuckDB reads in parallel; DuckDB
extracts the JSON fields and aggregates with a hash table instead of SQLite's
sorter. Semantics equal :mod:`event_aggregator`'s: only JSON numbers count, integer
sums are exact, percentiles are nearest-rank, values come back as their JSON text.
"""

from __future__ import annotations

import math
from typing import Any

from iotman.storage.ports import AggregateQuery
from iotman.storage.sqlite.event_reader import selection
from iotman.storage.sqlite.json_render import json_path
from iotman.storage.sqlite.tag_index import tag_json_path

__all__ = ["CHUNK_EVENTS", "duckdb_aggregate_sql", "sqlite_literal"]

CHUNK_EVENTS = 65536
"""Positions per ``sqlite_query`` chunk (at most ``_MAX_CHUNKS`` chunks)."""
_MAX_CHUNKS = 8
_PERCENT = {"p50": 50, "p95": 95, "p99": 99}


def sqlite_literal(value: Any) -> str:
    """``value`` as SQLite literal text (sqlite_query takes no parameters)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError("integer out of SQLite's range")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return repr(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("NUL in a string literal")
        return "'" + value.replace("'", "''") + "'"
    raise ValueError(f"no SQLite literal for {type(value).__name__}")


def _chunks(lo: int, hi: int) -> list[tuple[int, int]]:
    count = min(_MAX_CHUNKS, max(1, -(-(hi - lo + 1) // CHUNK_EVENTS)))
    step = -(-(hi - lo + 1) // count)
    return [(start, min(hi, start + step - 1)) for start in range(lo, hi + 1, step)]


def _select_sql(query: AggregateQuery, lo: int, hi: int) -> str:
    """The SQLite statement of one chunk, with its parameters written in as literals."""
    hint, terms, params = selection(query.events.sources, query.events.tags)
    columns = ["received_at_us AS r"]
    if query.group_by is not None:
        columns.append("tags AS t")
    if query.value_steps is not None:
        columns.append("payload AS p")
    where = " AND ".join([f"pos >= {lo}", f"pos <= {hi}", *terms])
    pieces = where.split("?")
    if len(pieces) != len(params) + 1:
        raise ValueError("a selection term holds a question mark")
    text = pieces[0] + "".join(sqlite_literal(v) + piece for v, piece in zip(params, pieces[1:], strict=True))
    return f"SELECT {', '.join(columns)} FROM events{hint} WHERE {text}"  # noqa: S608


def duckdb_aggregate_sql(query: AggregateQuery, lo: int, hi: int, connections: int = 1) -> tuple[str, list[Any]]:
    """(DuckDB SQL, parameters) answering ``query`` over positions ``lo..hi`` of the
    SQLite file attached ``connections`` times as ``log0``, ``log1``… (one attachment
    reads one chunk at a time, so several read in parallel). Rows: (bucket_us, group
    JSON text, value, count) with the value as text (JSON number text, or a DuckDB
    number rendering)."""
    params: list[Any] = []
    chunks = []
    for index, (start, end) in enumerate(_chunks(lo, hi)):
        chunks.append(f"SELECT * FROM sqlite_query('log{index % max(1, connections)}', ?)")  # noqa: S608
        params.append(_select_sql(query, start, end))
    events = " UNION ALL ".join(chunks)
    bucket = f"(CAST(r AS BIGINT) // {int(query.bucket_us)}) * {int(query.bucket_us)}" if query.bucket_us else "NULL"
    group = "CAST(json_extract(t, ?) AS VARCHAR)" if query.group_by else "NULL::VARCHAR"
    group_params = [tag_json_path(query.group_by)] if query.group_by else []
    if query.function == "count":
        sql = f"SELECT {bucket} AS b, {group} AS g, NULL::VARCHAR AS v, count(*) AS n FROM ({events}) GROUP BY b, g"  # noqa: S608
        return sql, [*group_params, *params]
    assert query.value_steps is not None
    if any(isinstance(step, str) and "*" in step for step in query.value_steps):
        raise ValueError("DuckDB reads * in a JSON path as a wildcard")
    path = json_path(query.value_steps)
    # json_extract gives JSON text: only a JSON number casts to DOUBLE (strings stay
    # quoted, true/false/null and containers do not cast), one parse per event
    numbers = (
        f"SELECT b, g, vt, vd FROM (SELECT b, g, vt, TRY_CAST(vt AS DOUBLE) AS vd FROM (SELECT {bucket} AS b,"  # noqa: S608
        f" {group} AS g, CAST(json_extract(p, ?) AS VARCHAR) AS vt FROM ({events}))) WHERE vd IS NOT NULL"
    )
    params = [*group_params, path, *params]
    function = query.function
    if function in _PERCENT:
        rank = f"greatest(1, CAST(ceil(n * {_PERCENT[function]} / 100.0) AS BIGINT))"
        sql = (
            f"SELECT b, g, vt AS v, n FROM (SELECT b, g, vt, row_number() OVER (PARTITION BY b, g ORDER BY vd) AS rn,"  # noqa: S608
            f" count(*) OVER (PARTITION BY b, g) AS n FROM ({numbers})) WHERE rn = {rank}"
        )
        return sql, params
    value = {
        "sum": "CASE WHEN bool_and(regexp_full_match(vt, '-?[0-9]{1,38}'))"
        " THEN CAST(sum(TRY_CAST(vt AS HUGEINT)) AS VARCHAR)"
        " ELSE CAST(fsum(vd) AS VARCHAR) END",
        "avg": "CAST(fsum(vd) / count(*) AS VARCHAR)",
        "min": "arg_min(vt, vd)",
        "max": "arg_max(vt, vd)",
    }[function]
    sql = f"SELECT b, g, {value} AS v, count(*) AS n FROM ({numbers}) GROUP BY b, g"  # noqa: S608
    return sql, params
