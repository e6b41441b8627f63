"""Appending to the log inside the writer thread: positions, ids, idempotency."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import orjson

from iotman.core.ids import UlidFactory
from iotman.errors import Conflict, NotFound
from iotman.storage.ports import SEQ_BITS, AppendBatch, AppendOutcome, AppendResult

__all__ = ["INSERT_EVENT", "INSERT_TAGGED", "AppendJob", "LogPositions"]

INSERT_EVENT = "INSERT INTO events (pos, id, source, received_at_us, payload, metadata) VALUES (?, ?, ?, ?, ?, ?)"
INSERT_TAGGED = (
    "INSERT INTO events (pos, id, source, received_at_us, payload, metadata, tags) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_LAST = "SELECT pos, received_at_us FROM events WHERE pos >= ? AND pos <= ? ORDER BY pos DESC LIMIT 1"


class LogPositions:
    """Next ``seq`` and last ``received_at`` per workspace; writer-thread only.

    Forgotten on rollback (``reset``) and reloaded from the table, so a rolled-back
    append never leaves a gap in ``seq``.
    """

    def __init__(self) -> None:
        self._next: dict[int, int] = {}
        self._last_time: dict[int, int] = {}
        self.ids = UlidFactory()
        # workspace ids are never reused; an append queued before a delete must not land
        self.deleted: set[int] = set()

    def reset(self) -> None:
        self._next.clear()
        self._last_time.clear()

    def load(self, conn: sqlite3.Connection, ws: int) -> None:
        base = ws << SEQ_BITS
        row = conn.execute(_LAST, (base, base + (1 << SEQ_BITS) - 1)).fetchone()
        if row is None:
            self._next[ws] = 1
            self._last_time[ws] = 0
        else:
            self._next[ws] = row[0] - base + 1
            self._last_time[ws] = row[1]

    def take(self, conn: sqlite3.Connection, ws: int, count: int, received_at_us: int) -> tuple[int, int]:
        """Reserve ``count`` seqs; returns (first seq, received_at clamped to be monotonic)."""
        if ws not in self._next:
            self.load(conn, ws)
        first = self._next[ws]
        received = max(received_at_us, self._last_time[ws])
        self._next[ws] = first + count
        self._last_time[ws] = received
        return first, received


class AppendJob:
    __slots__ = ("batch", "done", "idempotency_ttl_us", "now_us", "positions", "size")

    def __init__(
        self,
        batch: AppendBatch,
        done: Callable[[AppendOutcome], None],
        positions: LogPositions,
        idempotency_ttl_us: int,
        now_us: int,
    ) -> None:
        self.batch = batch
        self.done = done
        self.positions = positions
        self.size = len(batch.payloads)
        self.idempotency_ttl_us = idempotency_ttl_us
        self.now_us = now_us

    def finish(self, outcome: AppendOutcome) -> None:
        self.done(outcome)

    def run(self, conn: sqlite3.Connection) -> AppendOutcome:
        batch = self.batch
        ws = batch.workspace_id
        if ws in self.positions.deleted:
            return NotFound("the workspace was deleted", code="workspace_not_found")
        if batch.idempotency_key is not None:
            replay = self._replay(conn)
            if replay is not None:
                return replay
        count = len(batch.payloads)
        first, received = self.positions.take(conn, ws, count, batch.received_at_us)
        ids = self.positions.ids.block(received // 1000, count)
        base = (ws << SEQ_BITS) + first
        source = batch.source
        metadata = batch.metadata
        if batch.tags is not None or batch.event_metadata is not None:
            metas = batch.event_metadata or [metadata] * count
            tags = batch.tags or [None] * count
            conn.executemany(
                INSERT_TAGGED,
                [
                    (base + i, ids[i], source, received, p, m, t)
                    for i, (p, m, t) in enumerate(zip(batch.payloads, metas, tags, strict=True))
                ],
            )
        elif count == 1:
            conn.execute(INSERT_EVENT, (base, ids[0], source, received, batch.payloads[0], metadata))
        else:
            conn.executemany(
                INSERT_EVENT,
                [(base + i, ids[i], source, received, p, metadata) for i, p in enumerate(batch.payloads)],
            )
        last = first + count - 1
        if batch.idempotency_key is not None:
            conn.execute(
                "INSERT OR REPLACE INTO idempotency (ws_id, scope, key, fingerprint, ids, first_seq, last_seq,"
                " received_at_us, created_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ws,
                    batch.idempotency_scope,
                    batch.idempotency_key,
                    batch.fingerprint,
                    orjson.dumps(ids).decode(),
                    first,
                    last,
                    received,
                    self.now_us,
                ),
            )
        return AppendResult(ids, first, last, received)

    def _replay(self, conn: sqlite3.Connection) -> AppendOutcome | None:
        batch = self.batch
        row = conn.execute(
            "SELECT fingerprint, ids, first_seq, last_seq, received_at_us, created_at_us FROM idempotency"
            " WHERE ws_id=? AND scope=? AND key=?",
            (batch.workspace_id, batch.idempotency_scope, batch.idempotency_key),
        ).fetchone()
        if row is None or row[5] < self.now_us - self.idempotency_ttl_us:
            return None
        if row[0] != batch.fingerprint:
            return Conflict(
                "this Idempotency-Key was already used with a different body; use a new key for a new request",
                code="idempotency_key_reused",
                field="Idempotency-Key",
            )
        return AppendResult(orjson.loads(row[1]), row[2], row[3], row[4], replayed=True)
