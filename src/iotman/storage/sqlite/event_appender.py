"""Appending to the log inside the writer thread: positions, ids, idempotency.

A batch of events is written by one ``INSERT … SELECT`` statement, not by
``executemany``: CPython releases the GIL around every ``sqlite3_step`` and must take
it back afterwards, and while the event loop and the decoding threads run Python
that takes up to the switch interval (5 ms) each time. With one step a row a busy
server wrote a 1,000-event batch in seconds (a row per switch interval); with one
step a batch the writer waits a handful of times per batch. The rows come from
``json_each`` over a JSON array of the payload texts (SQLite unescapes them back to
the same text); ids, and per-event metadata and tags, are sliced out of one blob
each by offset (``substr`` on a blob is O(1), on text O(n)).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from itertools import accumulate

import orjson

from iotman.core.ids import UlidFactory
from iotman.errors import Conflict, NotFound
from iotman.storage.ports import SEQ_BITS, AppendBatch, AppendOutcome, AppendResult, StoredEvent
from iotman.storage.sqlite import deliveries
from iotman.storage.sqlite.view_rows import plan_folds, start_folds, write_folds

__all__ = ["INSERT_EVENT", "INSERT_TAGGED", "AppendJob", "LogPositions", "insert_batch"]

INSERT_EVENT = "INSERT INTO events (pos, id, source, received_at_us, payload, metadata) VALUES (?, ?, ?, ?, ?, ?)"
INSERT_TAGGED = (
    "INSERT INTO events (pos, id, source, received_at_us, payload, metadata, tags) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
SINGLE_ROW_MAX = 4
"""Batches up to this size are inserted row by row (the statement text is simpler)."""
ID_CHARS = 26
_OFFSET_FIELDS = "{:010d}{:010d}".format
_SLICE = (
    "CAST(substr({blob}, CAST(substr({offsets}, key * 20 + 1, 10) AS INTEGER),"
    " CAST(substr({offsets}, key * 20 + 11, 10) AS INTEGER)) AS TEXT)"
)
_INSERT_BATCH = (
    "INSERT INTO events (pos, id, source, received_at_us, payload, metadata, tags)"
    " SELECT ?1 + key, CAST(substr(?2, key * 26 + 1, 26) AS TEXT), ?3, ?4, value, {metadata}, {tags}"
    " FROM json_each(?5)"
)
INSERT_SHARED_META = _INSERT_BATCH.format(metadata="?6", tags="NULL")
INSERT_SHARED_META_TAGS = _INSERT_BATCH.format(
    metadata="?6", tags="NULLIF(" + _SLICE.format(blob="?8", offsets="?7") + ", '')"
)
INSERT_OWN_META_TAGS = _INSERT_BATCH.format(
    metadata=_SLICE.format(blob="?7", offsets="?6"), tags="NULLIF(" + _SLICE.format(blob="?9", offsets="?8") + ", '')"
)
_LAST = "SELECT pos, received_at_us FROM events WHERE pos >= ? AND pos <= ? ORDER BY pos DESC LIMIT 1"


def _sliced(texts: list[str | None]) -> tuple[bytes, bytes]:
    """(offsets, blob): 1-based offset and length of each text as two 10-digit fields."""
    parts = [b"" if text is None else text.encode() for text in texts]
    lengths = list(map(len, parts))
    offsets = "".join(map(_OFFSET_FIELDS, accumulate(lengths, initial=1), lengths))
    return offsets.encode(), b"".join(parts)


def insert_batch(
    conn: sqlite3.Connection,
    first_pos: int,
    ids: list[str],
    source: str,
    received_at_us: int,
    payloads: list[str],
    metadata: str | list[str],
    tags: list[str | None] | None,
) -> None:
    """Insert ``len(payloads)`` events at consecutive positions in one SQLite step.

    An empty metadata or tags text is stored as NULL (neither is ever empty JSON).
    """
    count = len(payloads)
    id_blob = "".join(ids).encode()
    if len(ids) != count or len(id_blob) != ID_CHARS * count:
        raise ValueError("ids must be one 26-character ULID per payload")
    rows = orjson.dumps(payloads).decode()
    if isinstance(metadata, str):
        if tags is None:
            cursor = conn.execute(INSERT_SHARED_META, (first_pos, id_blob, source, received_at_us, rows, metadata))
        else:
            cursor = conn.execute(
                INSERT_SHARED_META_TAGS,
                (first_pos, id_blob, source, received_at_us, rows, metadata, *_sliced(tags)),
            )
    else:
        cursor = conn.execute(
            INSERT_OWN_META_TAGS,
            (
                first_pos,
                id_blob,
                source,
                received_at_us,
                rows,
                *_sliced(list(metadata)),
                *_sliced(tags if tags is not None else [None] * count),
            ),
        )
    if cursor.rowcount != count:  # pragma: no cover - would mean SQLite read the array differently
        raise RuntimeError(f"batch insert wrote {cursor.rowcount} rows of {count}")


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
        folding = None
        if batch.folds:
            # keys and current rows first; a large batch's reducers then run on the fold thread
            # while this one inserts it (both without the GIL)
            metas = batch.event_metadata or [metadata] * count
            tags = batch.tags or [None] * count
            events = [
                StoredEvent(first + i, ids[i], source, received, p, m, t)
                for i, (p, m, t) in enumerate(zip(batch.payloads, metas, tags, strict=True))
            ]
            folding = start_folds(plan_folds(conn, ws, batch.folds, events, batch.payload_values))
        try:
            self._insert(conn, base, ids, received)
        finally:
            # even when the insert failed: the views are not folded twice at once
            changed = None if folding is None else folding.result()
        last = first + count - 1
        if batch.deliveries:
            deliveries.enqueue(conn, ws, first, batch.deliveries, self.now_us)
        if changed:
            write_folds(conn, ws, changed, received)
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

    def _insert(self, conn: sqlite3.Connection, base: int, ids: list[str], received: int) -> None:
        batch = self.batch
        count = len(batch.payloads)
        source = batch.source
        metadata = batch.metadata
        if count > SINGLE_ROW_MAX:
            insert_batch(
                conn, base, ids, source, received, batch.payloads, batch.event_metadata or metadata, batch.tags
            )
        elif batch.tags is not None or batch.event_metadata is not None:
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
