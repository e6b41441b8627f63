"""The single SQLite writer: one thread, one connection, group commit.

Every write of the process goes through ``GroupWriter``. The thread takes the first
queued job, then everything else already queued (up to ``max_events``), runs them
all in one ``BEGIN IMMEDIATE`` transaction and commits once; each job's callback
is called only after that commit. Concurrent producers therefore share one fsync,
and each is answered when its own write is durable.

A job's ``run(conn)`` returns its outcome. An ``IotmanError`` returned (not raised)
is an outcome for that job alone; a job that raises aborts the transaction, and the
group is then retried one job per transaction so only the faulty job fails.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Protocol

from iotman.errors import IotmanError, StorageFailure, Unavailable

__all__ = ["GroupWriter", "WriteJob"]

log = logging.getLogger("iotman.storage.writer")


class WriteJob(Protocol):
    size: int

    def run(self, conn: sqlite3.Connection) -> Any: ...

    def finish(self, outcome: Any) -> None: ...


class _CallJob:
    __slots__ = ("alone", "done", "fn", "size")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], done: Callable[[Any], None], *, alone: bool = False
    ) -> None:
        self.fn = fn
        self.done = done
        self.size = 1
        self.alone = alone  # in a transaction of its own: never run twice by a group's retry

    def run(self, conn: sqlite3.Connection) -> Any:
        conn.execute("SAVEPOINT job")
        try:
            result = self.fn(conn)
        except IotmanError as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return exc
        conn.execute("RELEASE job")
        return result

    def finish(self, outcome: Any) -> None:
        self.done(outcome)


_STOP = object()


class GroupWriter:
    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        max_events: int = 20000,
        on_rollback: Callable[[], None] | None = None,
        on_commit: Callable[[int, int], None] | None = None,
    ) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._max_events = max_events
        self._on_rollback = on_rollback
        self._on_commit = on_commit
        self._closed = False
        self._data_version: int | None = None
        self._thread = threading.Thread(target=self._loop, name="iotman-sqlite-writer", daemon=True)
        self._thread.start()

    # producer side ---------------------------------------------------------------
    def put(self, job: WriteJob) -> None:
        if self._closed:
            job.finish(Unavailable("the store is shutting down", code="shutting_down"))
            return
        self._queue.put(job)

    def call(self, fn: Callable[[sqlite3.Connection], Any], *, alone: bool = False) -> Any:
        """Run ``fn(conn)`` inside a write transaction and wait; raises its IotmanError.

        ``alone``: in a transaction of its own, not grouped with other jobs (a grouped job
        runs again, alone, when another job of its group fails)."""
        box: list[Any] = []
        ready = threading.Event()

        def done(outcome: Any) -> None:
            box.append(outcome)
            ready.set()

        self.put(_CallJob(fn, done, alone=alone))
        ready.wait()
        outcome = box[0]
        if isinstance(outcome, IotmanError):
            raise outcome
        return outcome

    def call_later(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        """Queue ``fn(conn)`` without waiting (best effort, errors are logged)."""

        def done(outcome: Any) -> None:
            if isinstance(outcome, IotmanError):
                log.warning("background write failed: %s", outcome.message)

        self.put(_CallJob(fn, done))

    def close(self) -> None:
        """Finish everything queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    # writer thread ---------------------------------------------------------------
    def _loop(self) -> None:
        pending: Any = None
        while True:
            job = pending if pending is not None else self._queue.get()
            pending = None
            if job is _STOP:
                return
            group = [job]
            events = job.size
            while events < self._max_events and not getattr(job, "alone", False):
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP or getattr(nxt, "alone", False):
                    pending = nxt
                    break
                group.append(nxt)
                events += nxt.size
            self._run_group(group, events)

    def _run_group(self, group: list[Any], events: int) -> None:
        try:
            outcomes = self._transaction(group)
        except Exception as exc:
            self._rollback()
            if len(group) == 1:
                log.exception("write failed: %s", exc)
                group[0].finish(StorageFailure("the store could not write this request; see the server log"))
                return
            for job in group:
                self._run_group([job], job.size)
            return
        if self._on_commit is not None:
            self._on_commit(len(group), events)
        for job, outcome in zip(group, outcomes, strict=True):
            try:
                job.finish(outcome)
            except Exception:
                log.exception("write callback failed")

    def _transaction(self, group: list[Any]) -> list[Any]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        # another connection (a second server on this store) committed since our last
        # transaction: what we keep in memory about the table (next seq) is stale
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            if self._data_version is not None and self._on_rollback is not None:
                self._on_rollback()
            self._data_version = version
        outcomes = [job.run(conn) for job in group]
        conn.execute("COMMIT")
        return outcomes

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed")
        if self._on_rollback is not None:
            self._on_rollback()
