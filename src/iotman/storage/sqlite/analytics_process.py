"""The server's side of the analytics worker (:mod:`analytics_worker`).

One child process, started on the first large aggregation and kept for the next
ones; queries take turns. When it cannot start, dies or answers too slowly it is
stopped (by its PID) and :class:`AnalyticsUnavailable` tells the store to answer
with SQLite; a new start is tried after ``retry_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import threading
import time
from typing import IO, Any

import msgpack

from iotman.storage.sqlite.analytics_frames import FRAME_LENGTH, pack_frame

__all__ = ["AnalyticsProcess", "AnalyticsUnavailable"]

log = logging.getLogger("iotman.storage.analytics")


class AnalyticsUnavailable(Exception):
    """The worker could not answer; the caller answers with SQLite instead."""


class AnalyticsProcess:
    def __init__(
        self,
        db_path: str,
        *,
        threads: int,
        memory_mb: int,
        start_seconds: float = 60.0,
        query_seconds: float = 600.0,
        retry_seconds: float = 60.0,
        wait_seconds: float = 30.0,
    ) -> None:
        self._db_path = db_path
        self._threads = threads
        self._memory_mb = memory_mb
        self._start_seconds = start_seconds
        self._query_seconds = query_seconds
        self._retry_seconds = retry_seconds
        self._wait_seconds = wait_seconds
        self._closed = False
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._failed_at: float | None = None
        self.version: str | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def query(self, sql: str, params: list[Any]) -> list[list[Any]]:
        """The rows of ``sql``; queries take turns, and one that waits longer than
        ``wait_seconds`` for its turn is not run here (the caller uses SQLite)."""
        try:
            request = pack_frame({"sql": sql, "params": params})
        except (TypeError, ValueError) as exc:  # not representable; the worker is fine
            raise AnalyticsUnavailable(f"cannot send the query: {exc}") from exc
        if not self._lock.acquire(timeout=self._wait_seconds):
            raise AnalyticsUnavailable("the analytics worker is busy")
        try:
            if self._closed:
                raise AnalyticsUnavailable("the store is closed")
            proc = self._running()
            assert proc.stdin is not None
            assert proc.stdout is not None
            try:
                proc.stdin.write(request)
                proc.stdin.flush()
                answer = self._receive(proc.stdout, self._query_seconds)
            except (OSError, ValueError) as exc:
                self._stop(f"the analytics worker failed: {exc}")
                raise AnalyticsUnavailable(str(exc)) from exc
        finally:
            self._lock.release()
        if "error" in answer:
            raise AnalyticsUnavailable(str(answer["error"]))
        rows: list[list[Any]] = answer["rows"]
        return rows

    def close(self) -> None:
        """Stop the worker now, also in the middle of a query (that query then fails over
        to SQLite); no worker starts after this."""
        self._closed = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()  # our child, by its PID; a waiting query sees the pipe close
        with self._lock:
            self._stop(None)

    # internals -----------------------------------------------------------------------
    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._stop(f"the analytics worker exited with {self._proc.returncode}")
        if self._failed_at is not None and time.monotonic() - self._failed_at < self._retry_seconds:
            raise AnalyticsUnavailable("the analytics worker failed recently")
        command = [
            sys.executable,
            "-m",
            "iotman.storage.sqlite.analytics_worker",
            self._db_path,
            str(self._threads),
            str(self._memory_mb),
        ]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # noqa: S603
        self._proc = proc
        assert proc.stdout is not None
        try:
            hello = self._receive(proc.stdout, self._start_seconds)
        except (OSError, ValueError) as exc:
            self._stop(f"the analytics worker did not start: {exc}")
            raise AnalyticsUnavailable(str(exc)) from exc
        if "ready" not in hello:
            self._stop(f"the analytics worker did not start: {hello.get('error')}")
            raise AnalyticsUnavailable(str(hello.get("error")))
        self.version = str(hello["ready"])
        self._failed_at = None
        log.info("analytics worker started", extra={"pid": proc.pid, "duckdb": self.version})
        return proc

    def _receive(self, stream: IO[bytes], seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        head = self._read_exactly(stream, FRAME_LENGTH.size, deadline)
        (size,) = FRAME_LENGTH.unpack(head)
        message: dict[str, Any] = msgpack.unpackb(self._read_exactly(stream, size, deadline), raw=False)
        return message

    @staticmethod
    def _read_exactly(stream: IO[bytes], size: int, deadline: float) -> bytes:
        fd = stream.fileno()
        poller = select.poll()  # not select(): descriptors above 1024 are common in a busy server
        poller.register(fd, select.POLLIN)
        chunks: list[bytes] = []
        left = size
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0 or not poller.poll(wait * 1000):
                raise OSError("no answer in time")
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise OSError("the worker closed its output")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _stop(self, reason: str | None) -> None:
        proc, self._proc = self._proc, None
        if reason is not None:
            self._failed_at = time.monotonic()
            log.warning("%s; aggregations use SQLite meanwhile", reason)
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
