"""Baseline (d): raw SQLite writes of the batches iotman stores, one transaction each.

Same table (``EVENTS_DDL``), same connection pragmas (``open_connection(writer=True)``),
same row shape as iotman's appender; rows (positions, ULIDs, payload and metadata
texts) are built before the clock starts. Each batch is written both ways SQLite
offers from Python, and the faster counts: ``executemany`` of the single-row INSERT,
and the one-statement batch INSERT iotman's writer uses (``insert_batch``), so the
baseline stays the ceiling of the store whichever way iotman writes.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from iotman.core.ids import UlidFactory
from iotman.storage.ports import SEQ_BITS
from iotman.storage.sqlite.connection import EVENTS_DDL, open_connection
from iotman.storage.sqlite.event_appender import INSERT_EVENT as IOTMAN_INSERT
from iotman.storage.sqlite.event_appender import insert_batch

__all__ = ["SqliteRun", "build_batches", "run_sqlite_baseline"]

Row = tuple[int, str, str, int, str, str]

# What iotman stores as metadata for an anonymous POST from 127.0.0.1 (ingest_service._prepare).
_METADATA = orjson.dumps(
    {"source_ip": "127.0.0.1", "auth_method": "none", "oauth2_client_id": None, "ingest_context": {}}
).decode()


@dataclass(slots=True)
class SqliteRun:
    rows_per_s: float
    rows_per_s_runs: list[float]
    method: str
    batches: int
    batch_size: int
    seconds: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_per_s": self.rows_per_s,
            "rows_per_s_runs": self.rows_per_s_runs,
            "method": self.method,
            "batches": self.batches,
            "batch_size": self.batch_size,
            "seconds": self.seconds,
        }


def build_batches(
    events: list[dict[str, object]], batches: int, workspace_id: int = 1, source: str = "readings"
) -> list[list[Row]]:
    """``batches`` copies of ``events`` as iotman rows: consecutive positions, fresh monotonic ids."""
    payloads = [orjson.dumps(event).decode() for event in events]
    ids = UlidFactory()
    now_us = time.time_ns() // 1000
    first_pos = (workspace_id << SEQ_BITS) + 1
    built: list[list[Row]] = []
    for b in range(batches):
        received = now_us + b * 1000
        block = ids.block(received // 1000, len(payloads))
        base = first_pos + b * len(payloads)
        built.append([(base + i, block[i], source, received, p, _METADATA) for i, p in enumerate(payloads)])
    return built


def _write_rows(conn: sqlite3.Connection, rows: list[Row]) -> None:
    conn.executemany(IOTMAN_INSERT, rows)


def _write_statement(conn: sqlite3.Connection, rows: list[Row]) -> None:
    first = rows[0]
    insert_batch(conn, first[0], [r[1] for r in rows], first[2], first[3], [r[4] for r in rows], first[5], None)


METHODS: dict[str, Callable[[sqlite3.Connection, list[Row]], None]] = {
    "executemany": _write_rows,
    "insert_batch": _write_statement,
}


def _one_run(path: Path, batches: list[list[Row]], method: str) -> float:
    write = METHODS[method]
    conn = open_connection(str(path), writer=True)
    try:
        conn.executescript(EVENTS_DDL)
        started = time.perf_counter()
        for rows in batches:
            conn.execute("BEGIN IMMEDIATE")
            write(conn, rows)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    expected = sum(len(rows) for rows in batches)
    if stored != expected:
        raise RuntimeError(f"sqlite baseline stored {stored} rows, expected {expected}")
    return elapsed


def run_sqlite_baseline(
    folder: Path, events: list[dict[str, object]], batches: int = 200, repeats: int = 3
) -> SqliteRun:
    """Time ``batches`` transactions into a fresh database, ``repeats`` times per method; the
    median of the faster method counts."""
    prepared = build_batches(events, batches)
    rows = batches * len(events)
    timings: dict[str, list[float]] = {method: [] for method in METHODS}
    for attempt in range(repeats):
        for method in METHODS:  # alternated, so a slow phase of the machine hits both
            path = folder / f"sqlite-baseline-{method}-{attempt}.db"
            timings[method].append(_one_run(path, prepared, method))
            for leftover in folder.glob(f"{path.name}*"):
                leftover.unlink()
    method = min(timings, key=lambda m: statistics.median(timings[m]))
    seconds = timings[method]
    rates = [round(rows / s, 1) for s in seconds]
    return SqliteRun(
        rows_per_s=round(statistics.median(rates), 1),
        rows_per_s_runs=rates,
        method=method,
        batches=batches,
        batch_size=len(events),
        seconds=[round(s, 4) for s in seconds],
    )
