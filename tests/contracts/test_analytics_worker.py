"""The DuckDB analytics worker process: start, answers, failures, fallback, exit."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from iotman.connect.json_codec import dump_json
from iotman.core.clock import FixedClock
from iotman.storage.ports import AggregateQuery, AppendBatch, EventQuery
from iotman.storage.sqlite.analytics_process import AnalyticsProcess, AnalyticsUnavailable
from iotman.storage.sqlite.store import AnalyticsOptions, SqliteStore
from tests.contracts.test_store_contract import T0


def gone(pid: int, seconds: float = 10.0) -> bool:
    """The process has exited (a zombie not yet reaped by its parent counts as exited)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def log_file(tmp_path: Path) -> str:
    path = str(tmp_path / "log.db")
    store = SqliteStore(path, clock=FixedClock(T0))
    store.open()
    ws = store.create_workspace("w", "w", T0).id
    store.append(AppendBatch(ws, "s", [dump_json({"v": i}) for i in range(10)], "{}", T0))
    store.close()
    return path


def test_answers_and_exits_when_closed(log_file: str) -> None:
    worker = AnalyticsProcess(log_file, threads=2, memory_mb=256)
    rows = worker.query("SELECT count(*) FROM sqlite_query('log1', 'SELECT pos FROM events')", [])
    assert rows == [[10]]
    assert worker.version == "1.5.5"
    pid = worker.pid
    assert pid is not None
    worker.close()
    assert gone(pid)


def test_a_query_error_keeps_the_worker(log_file: str) -> None:
    worker = AnalyticsProcess(log_file, threads=1, memory_mb=256)
    try:
        with pytest.raises(AnalyticsUnavailable, match="Catalog Error"):
            worker.query("SELECT * FROM no_such_table", [])
        pid = worker.pid
        assert worker.query("SELECT 41 + ?", [1]) == [[42]]
        assert worker.pid == pid
    finally:
        worker.close()


def test_a_worker_that_cannot_start_is_not_retried_at_once(tmp_path: Path) -> None:
    worker = AnalyticsProcess(str(tmp_path / "missing" / "log.db"), threads=1, memory_mb=256, retry_seconds=60)
    with pytest.raises(AnalyticsUnavailable):
        worker.query("SELECT 1", [])
    started = time.monotonic()
    with pytest.raises(AnalyticsUnavailable, match="failed recently"):
        worker.query("SELECT 1", [])
    assert time.monotonic() - started < 0.5  # no second start attempt
    worker.close()


def test_a_killed_worker_is_restarted(log_file: str) -> None:
    worker = AnalyticsProcess(log_file, threads=1, memory_mb=256, retry_seconds=0)
    try:
        assert worker.query("SELECT 1", []) == [[1]]
        pid = worker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)
        # the query that finds the worker dead may fail (the store then answers with SQLite);
        # the next one starts a new worker
        with contextlib.suppress(AnalyticsUnavailable):
            worker.query("SELECT 2", [])
        assert worker.query("SELECT 3", []) == [[3]]
        assert worker.pid not in (None, pid)
    finally:
        worker.close()


def test_a_slow_answer_stops_the_worker(log_file: str) -> None:
    worker = AnalyticsProcess(log_file, threads=1, memory_mb=256, query_seconds=0.2)
    try:
        worker.query("SELECT 1", [])
        pid = worker.pid
        assert pid is not None
        slow = "SELECT count(*) FROM range(100000000000) a"
        with pytest.raises(AnalyticsUnavailable, match="in time"):
            worker.query(slow, [])
        assert gone(pid)
        assert worker.pid is None
    finally:
        worker.close()


def test_the_store_falls_back_to_sqlite_when_duckdb_fails(log_file: str) -> None:
    engines: list[str] = []
    store = SqliteStore(
        log_file,
        analytics=AnalyticsOptions(min_events=1),
        on_aggregate=lambda engine, _: engines.append(engine),
    )
    store.open()
    try:
        query = AggregateQuery(EventQuery(1), "sum", ("v",), None, None)
        assert [(r.value, r.count) for r in store.aggregate(query)] == [(45, 10)]
        assert store.analytics is not None
        pid = store.analytics.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)
        assert [(r.value, r.count) for r in store.aggregate(query)] == [(45, 10)]
        assert engines == ["duckdb", "sqlite"]
    finally:
        store.close()


def test_small_ranges_stay_in_sqlite(log_file: str) -> None:
    engines: list[str] = []
    store = SqliteStore(
        log_file,
        analytics=AnalyticsOptions(min_events=11),
        on_aggregate=lambda engine, _: engines.append(engine),
    )
    store.open()
    try:
        store.aggregate(AggregateQuery(EventQuery(1), "count", None, None, None))
        assert engines == ["sqlite"]
        assert store.analytics is None  # no worker was started
    finally:
        store.close()
