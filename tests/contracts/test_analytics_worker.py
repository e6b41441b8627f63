"""The DuckDB analytics worker process: start, answers, failures, fallback, exit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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


def store_counting_engines(log_file: str, min_events: int) -> tuple[SqliteStore, list[str]]:
    """An open store on ``log_file`` and the list of engines that answered its aggregations."""
    engines: list[str] = []
    store = SqliteStore(
        log_file,
        analytics=AnalyticsOptions(min_events=min_events),
        on_aggregate=lambda engine, _: engines.append(engine),
    )
    store.open()
    return store, engines


def test_the_store_falls_back_to_sqlite_when_duckdb_fails(log_file: str) -> None:
    store, engines = store_counting_engines(log_file, 1)
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
    store, engines = store_counting_engines(log_file, 11)
    try:
        store.aggregate(AggregateQuery(EventQuery(1), "count", None, None, None))
        assert engines == ["sqlite"]
        assert store.analytics is None  # no worker was started
    finally:
        store.close()


def test_close_stops_a_running_query_and_no_worker_starts_after(log_file: str) -> None:
    worker = AnalyticsProcess(log_file, threads=1, memory_mb=256)
    worker.query("SELECT 1", [])
    pid = worker.pid
    assert pid is not None
    failures: list[Exception] = []

    def slow() -> None:
        try:
            worker.query("SELECT count(*) FROM range(100000000000) a", [])
        except AnalyticsUnavailable as exc:
            failures.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    worker.close()
    thread.join(10)
    assert time.monotonic() - started < 5
    assert len(failures) == 1
    assert gone(pid)
    with pytest.raises(AnalyticsUnavailable, match="closed"):
        worker.query("SELECT 1", [])
    assert worker.pid is None


def test_first_use_from_many_threads_starts_one_worker(log_file: str) -> None:
    store = SqliteStore(log_file, analytics=AnalyticsOptions(min_events=1))
    store.open()
    try:
        query = AggregateQuery(EventQuery(1), "count", None, None, None)
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: store.aggregate(query)[0].count, range(6)))
        assert answers == [10] * 6
        workers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_worker_of(p, os.getpid())]
        assert len(workers) == 1
    finally:
        store.close()


def _is_worker_of(proc: Path, parent: int) -> bool:
    try:
        stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        command = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return int(stat[1]) == parent and b"analytics_worker" in command and stat[0] not in ("Z", "X")


def test_a_worker_whose_server_dies_exits_mid_query(tmp_path: Path, log_file: str) -> None:
    script = tmp_path / "server.py"
    script.write_text(
        "import sys\n"
        "from iotman.storage.sqlite.analytics_process import AnalyticsProcess\n"
        f"worker = AnalyticsProcess({log_file!r}, threads=1, memory_mb=256)\n"
        "worker.query('SELECT 1', [])\n"
        "print(worker.pid, flush=True)\n"
        "worker.query('SELECT count(*) FROM range(100000000000) a', [])\n"
    )
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        pid = int(server.stdout.readline())
        time.sleep(0.3)
        server.kill()
        server.wait()
        assert gone(pid), "the worker outlived its server"
    finally:
        if server.poll() is None:
            server.kill()
