"""SqliteStore: the embedded default store (one file, WAL, single group-commit writer)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import orjson

from iotman.core.clock import Clock, SystemClock
from iotman.core.workspace import Workspace
from iotman.errors import Conflict, IotmanError, NotFound
from iotman.storage.ports import (
    SEQ_BITS,
    AggregateQuery,
    AggregateRow,
    AppendBatch,
    AppendOutcome,
    AppendResult,
    DefinitionRecord,
    Delivery,
    DeliveryResult,
    EventQuery,
    OutboxEmail,
    QuarantineEntry,
    RenderedText,
    RenderSpec,
    StoredEvent,
    TokenRecord,
    ViewFold,
    ViewRow,
)
from iotman.storage.sqlite import deliveries, email_outbox, event_aggregator, event_reader, view_rows
from iotman.storage.sqlite.analytics_process import AnalyticsProcess, AnalyticsUnavailable
from iotman.storage.sqlite.analytics_sql import duckdb_aggregate_sql
from iotman.storage.sqlite.connection import open_connection
from iotman.storage.sqlite.event_appender import AppendJob, LogPositions
from iotman.storage.sqlite.group_writer import GroupWriter
from iotman.storage.sqlite.migrator import migrate
from iotman.storage.sqlite.tag_index import driving_index, index_name, tag_index_ddl

__all__ = ["AnalyticsOptions", "SqliteStore"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Raised:
    exc: BaseException


class InlineWriter:
    """The writer as seen from inside ``transaction()``: every job runs at once, on its connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def put(self, job: Any) -> None:
        job.finish(job.run(self._conn))

    def call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return fn(self._conn)

    def call_later(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        fn(self._conn)


log = logging.getLogger("iotman.storage.analytics")

_MAX_SEQ = (1 << SEQ_BITS) - 1
_DEF_COLUMNS = "kind, name, body, version, created_at_us, updated_at_us"


def _definition(row: tuple[Any, ...]) -> DefinitionRecord:
    return DefinitionRecord(row[0], row[1], orjson.loads(row[2]), row[3], row[4], row[5])


def _workspace(row: tuple[Any, ...]) -> Workspace:
    return Workspace(row[0], row[1], row[2], row[3])


@dataclass(frozen=True, slots=True)
class AnalyticsOptions:
    """When aggregations go to DuckDB (decision 0006): ranges of at least ``min_events``
    positions; ``0`` keeps every aggregation in SQLite."""

    min_events: int = 0
    threads: int = 2
    memory_mb: int = 1024


class SqliteStore:
    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "normal",
        max_events: int = 20000,
        idempotency_ttl_us: int = 86_400_000_000,
        clock: Clock | None = None,
        on_commit: Callable[[int, int], None] | None = None,
        analytics: AnalyticsOptions | None = None,
        on_aggregate: Callable[[str, float], None] | None = None,
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._max_events = max_events
        self._idempotency_ttl_us = idempotency_ttl_us
        self._clock = clock or SystemClock()
        self._on_commit = on_commit
        self._local = threading.local()
        self._bound = threading.local()  # the write connection, on the writer thread, inside transaction()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._tag_indexes: set[str] = set()  # names known to exist
        self._positions = LogPositions()
        self._writer: GroupWriter | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._analytics_options = analytics or AnalyticsOptions()
        self._on_aggregate = on_aggregate
        self.analytics: AnalyticsProcess | None = None

    # lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        self.analytics = None
        conn = open_connection(self.path, synchronous=self._synchronous, writer=True)
        migrate(conn)
        self._write_conn = conn
        self._writer = GroupWriter(
            conn, max_events=self._max_events, on_rollback=self._positions.reset, on_commit=self._on_commit
        )

    def close(self) -> None:
        if self.analytics is not None:
            self.analytics.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._write_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._write_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._write_conn.close()
            self._write_conn = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._local = threading.local()

    def _reader(self) -> sqlite3.Connection:
        bound: sqlite3.Connection | None = getattr(self._bound, "conn", None)
        if bound is not None:
            return bound
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_connection(self.path, synchronous=self._synchronous)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @property
    def writer(self) -> GroupWriter | InlineWriter:
        bound: sqlite3.Connection | None = getattr(self._bound, "conn", None)
        if bound is not None:  # inside transaction(): this store's calls join its savepoint
            return InlineWriter(bound)
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    def transaction(self, fn: Callable[[], T], *, keep: bool = True) -> T:
        """Run ``fn()`` on the writer thread with every call of this store (appends and view
        folds, definitions, reads) inside one savepoint of a write transaction, so reads see
        its own writes. It commits when ``fn`` returns and ``keep``; when ``fn`` raises (the
        exception is re-raised here) or ``keep`` is false, all of it is undone, ``seq``
        positions included. ``fn`` runs once, in a write transaction of its own (other writes
        wait for it). Called inside another, it nests: its undo leaves the outer one's work."""
        bound: sqlite3.Connection | None = getattr(self._bound, "conn", None)
        if bound is not None:
            return self._savepoint(bound, fn, keep)

        def job(conn: sqlite3.Connection) -> Any:
            self._bound.conn = conn
            try:
                return self._savepoint(conn, fn, keep)
            except BaseException as exc:  # noqa: BLE001 - undone already, raised in the caller's thread
                return _Raised(exc)
            finally:
                self._bound.conn = None

        writer = self.writer
        # alone: a grouped job runs again when another job of its group fails, and fn must run once
        outcome = writer.call(job, alone=True) if isinstance(writer, GroupWriter) else writer.call(job)
        if isinstance(outcome, _Raised):
            raise outcome.exc
        return cast(T, outcome)

    def _savepoint(self, conn: sqlite3.Connection, fn: Callable[[], T], keep: bool) -> T:
        depth = getattr(self._bound, "depth", 0)
        name = f"iotman_transaction_{depth}"
        conn.execute(f"SAVEPOINT {name}")
        self._bound.depth = depth + 1
        try:
            result = fn()
        except BaseException:
            self._undo(conn, name)
            raise
        finally:
            self._bound.depth = depth
        if keep:
            conn.execute(f"RELEASE {name}")
        else:
            self._undo(conn, name)
        return result

    def _undo(self, conn: sqlite3.Connection, name: str) -> None:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        self._positions.reset()  # reloaded from the table: the undone appends leave no gap

    def flush(self) -> None:
        self.writer.call(lambda conn: None)

    # events ------------------------------------------------------------------------
    def submit(self, batch: AppendBatch, done: Callable[[AppendOutcome], None]) -> None:
        self.writer.put(AppendJob(batch, done, self._positions, self._idempotency_ttl_us, self._clock.now_us()))

    def append(self, batch: AppendBatch) -> AppendResult:
        box: list[AppendOutcome] = []
        ready = threading.Event()

        def done(outcome: AppendOutcome) -> None:
            box.append(outcome)
            ready.set()

        self.submit(batch, done)
        ready.wait()
        outcome = box[0]
        if isinstance(outcome, IotmanError):
            raise outcome
        return outcome

    def _snapshot(self, query: EventQuery, read: Callable[..., T], *args: Any) -> T:
        """``read(conn, query, *args)`` in one read transaction (one snapshot of the log)."""
        self._indexed(query)
        conn = self._reader()
        if conn.in_transaction:  # inside transaction(): already one snapshot, with its own writes
            return read(conn, query, *args)
        conn.execute("BEGIN")
        try:
            return read(conn, query, *args)
        finally:
            conn.execute("COMMIT")

    def read_events(self, query: EventQuery) -> list[StoredEvent]:
        return self._snapshot(query, event_reader.read_events)

    def read_rendered(self, query: EventQuery, spec: RenderSpec) -> list[tuple[int, str]]:
        return self._snapshot(query, event_reader.read_rendered, spec)

    def read_rendered_text(self, query: EventQuery, spec: RenderSpec) -> RenderedText:
        return self._snapshot(query, event_reader.read_rendered_text, spec)

    def last_seq(self, workspace_id: int) -> int:
        return event_reader.last_seq(self._reader(), workspace_id)

    def aggregate(self, query: AggregateQuery) -> list[AggregateRow]:
        started = time.perf_counter()
        self._indexed(query.events)
        engine, rows = "sqlite", None
        if self._analytics_options.min_events > 0 and self.path != ":memory:":
            bounds = self._bounds(query)
            if bounds is None:
                return []
            if bounds[1] - bounds[0] + 1 >= self._analytics_options.min_events:
                # no SQLite snapshot is held meanwhile: DuckDB reads its own
                rows = self._aggregate_in_duckdb(query, bounds)
                engine = "duckdb" if rows is not None else "sqlite"
        if rows is None:
            conn = self._reader()
            begun = not conn.in_transaction  # inside transaction() it already is one
            if begun:
                conn.execute("BEGIN")
            try:
                bounds = self._bounds(query, conn)
                rows = [] if bounds is None else event_aggregator.aggregate(conn, query, bounds)
            finally:
                if begun:
                    conn.execute("COMMIT")
        if self._on_aggregate is not None:
            self._on_aggregate(engine, time.perf_counter() - started)
        return rows

    def _bounds(self, query: AggregateQuery, conn: sqlite3.Connection | None = None) -> tuple[int, int] | None:
        conn = conn or self._reader()
        bounds = event_reader.position_bounds(conn, query.events)
        if bounds is None:
            return None
        return event_reader.occupied_bounds(conn, bounds, query.events.sources, query.events.tags)

    def _aggregate_in_duckdb(self, query: AggregateQuery, bounds: tuple[int, int]) -> list[AggregateRow] | None:
        """DuckDB's answer, or None when SQLite must answer (the reason is logged)."""
        try:
            sql, params = duckdb_aggregate_sql(query, *bounds, self._analytics_options.threads)
        except ValueError as exc:  # a selection value or path DuckDB's side cannot carry
            log.info("aggregation stays in SQLite: %s", exc)
            return None
        analytics = self._analytics_process()
        try:
            return event_aggregator.finish(analytics.query(sql, params))
        except AnalyticsUnavailable as exc:
            log.warning("aggregation answered by SQLite: DuckDB failed: %s", exc)
            return None

    def _analytics_process(self) -> AnalyticsProcess:
        with self._readers_lock:
            if self.analytics is None:
                options = self._analytics_options
                self.analytics = AnalyticsProcess(self.path, threads=options.threads, memory_mb=options.memory_mb)
            return self.analytics

    def ensure_tag_index(self, tags: dict[str, Any]) -> None:
        key, presence = driving_index(tags)
        name = index_name(key, presence)
        if name in self._tag_indexes:
            return
        if not self._reader().execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone():
            statement = tag_index_ddl(key, presence)

            def fn(conn: sqlite3.Connection) -> None:
                conn.execute(statement)

            self.writer.call(fn)
        if getattr(self._bound, "conn", None) is None:  # inside transaction() the index may yet be undone
            self._tag_indexes.add(name)

    def _indexed(self, query: EventQuery) -> None:
        """Selections by tag name their index; outputs create it, this covers any other caller."""
        if query.tags:
            self.ensure_tag_index(query.tags)

    # views -----------------------------------------------------------------------
    def view_row(self, workspace_id: int, view: str, key: str) -> ViewRow | None:
        return view_rows.read_row(self._reader(), workspace_id, view, key)

    def view_rows(self, workspace_id: int, view: str, prefix: str, after: str | None, limit: int) -> list[ViewRow]:
        return view_rows.read_rows(self._reader(), workspace_id, view, prefix, after, limit)

    def delete_view_rows(self, workspace_id: int, view: str) -> None:
        self.writer.call(lambda conn: view_rows.delete_rows(conn, workspace_id, view))

    def fold_events(self, workspace_id: int, fold: ViewFold, events: list[StoredEvent], now_us: int) -> None:
        self.writer.call(lambda conn: view_rows.fold_views(conn, workspace_id, [fold], events, now_us))

    def finish_rebuild(
        self,
        workspace_id: int,
        fold: ViewFold,
        into: str,
        sources: tuple[str, ...] | None,
        after_seq: int,
        now_us: int,
        definition: tuple[str, int, int],
    ) -> int | None:
        kind, version, created_at_us = definition

        def fn(conn: sqlite3.Connection) -> int | None:
            # read in this transaction: a change queued in the same group commit is seen too
            row = conn.execute(
                "SELECT version, created_at_us FROM definitions WHERE ws_id = ? AND kind = ? AND name = ?",
                (workspace_id, kind, into),
            ).fetchone()
            if row is None or tuple(row) != (version, created_at_us):
                view_rows.delete_rows(conn, workspace_id, fold.name)
                return None
            last = after_seq
            while True:  # the writer is ours: nothing is appended until this transaction ends
                query = EventQuery(workspace_id, sources=sources, after_seq=last, limit=5000, descending=False)
                events = event_reader.read_events(conn, query)
                if not events:
                    break
                view_rows.fold_views(conn, workspace_id, [fold], events, now_us)
                last = events[-1].seq
            view_rows.replace_rows(conn, workspace_id, fold.name, into)
            return last

        result: int | None = self.writer.call(fn)
        return result

    def count_events(self, workspace_id: int) -> int:
        return event_reader.count_events(self._reader(), workspace_id)

    # workspaces --------------------------------------------------------------------
    def create_workspace(self, slug: str, uuid: str, now_us: int) -> Workspace:
        def fn(conn: sqlite3.Connection) -> Workspace:
            try:
                cur = conn.execute(
                    "INSERT INTO workspaces (slug, uuid, created_at_us) VALUES (?, ?, ?)", (slug, uuid, now_us)
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"workspace {slug!r} already exists", code="already_exists", field="slug") from None
            assert cur.lastrowid is not None
            return Workspace(cur.lastrowid, slug, uuid, now_us)

        result: Workspace = self.writer.call(fn)
        return result

    def get_workspace(self, slug: str) -> Workspace | None:
        row = (
            self._reader()
            .execute("SELECT id, slug, uuid, created_at_us FROM workspaces WHERE slug=?", (slug,))
            .fetchone()
        )
        return None if row is None else _workspace(row)

    def list_workspaces(self) -> list[Workspace]:
        rows = self._reader().execute("SELECT id, slug, uuid, created_at_us FROM workspaces ORDER BY slug")
        return [_workspace(r) for r in rows]

    def delete_workspace(self, workspace_id: int) -> None:
        base = workspace_id << SEQ_BITS

        def fn(conn: sqlite3.Connection) -> None:
            # checked inside the write transaction: concurrent deletes cannot remove the last one
            if conn.execute("SELECT count(*) FROM workspaces").fetchone()[0] <= 1:
                raise Conflict("the last workspace cannot be deleted", code="last_workspace")
            if conn.execute("DELETE FROM workspaces WHERE id=?", (workspace_id,)).rowcount == 0:
                raise NotFound("the workspace does not exist", code="workspace_not_found")
            self._positions.deleted.add(workspace_id)
            for table in (
                "definitions",
                "tokens",
                "idempotency",
                "quarantine",
                "view_rows",
                "workspace_settings",
                "email_outbox",
                "deliveries",
            ):
                conn.execute(f"DELETE FROM {table} WHERE ws_id=?", (workspace_id,))  # noqa: S608
            conn.execute("DELETE FROM events WHERE pos >= ? AND pos <= ?", (base, base + _MAX_SEQ))

        self.writer.call(fn)

    # workspace settings and the email outbox -------------------------------------------
    def put_setting(self, workspace_id: int, name: str, body: dict[str, Any], now_us: int) -> None:
        self.writer.call(lambda conn: email_outbox.put_setting(conn, workspace_id, name, body, now_us))

    def get_setting(self, workspace_id: int, name: str) -> dict[str, Any] | None:
        return email_outbox.get_setting(self._reader(), workspace_id, name)

    def list_settings(self, workspace_id: int, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        return email_outbox.list_settings(self._reader(), workspace_id, prefix)

    def delete_setting(self, workspace_id: int, name: str) -> bool:
        deleted: bool = self.writer.call(lambda conn: email_outbox.delete_setting(conn, workspace_id, name))
        return deleted

    def enqueue_email(self, workspace_id: int, recipients: list[str], subject: str, body: str, now_us: int) -> int:
        email_id: int = self.writer.call(
            lambda conn: email_outbox.enqueue(conn, workspace_id, recipients, subject, body, now_us)
        )
        return email_id

    def claim_emails(self, now_us: int, lease_us: int, limit: int) -> list[OutboxEmail]:
        found: list[OutboxEmail] = self.writer.call(lambda conn: email_outbox.claim_due(conn, now_us, lease_us, limit))
        return found

    def email_sent(self, email_id: int, now_us: int) -> None:
        self.writer.call(lambda conn: email_outbox.mark_sent(conn, email_id, now_us))

    def email_failed(self, email_id: int, error: str, next_attempt_us: int | None) -> None:
        self.writer.call(lambda conn: email_outbox.mark_failed(conn, email_id, error, next_attempt_us))

    def list_emails(self, workspace_id: int, before_id: int | None, limit: int) -> list[OutboxEmail]:
        return email_outbox.list_emails(self._reader(), workspace_id, before_id, limit)

    # the delivery outbox -----------------------------------------------------------------
    def claim_deliveries(self, now_us: int, lease_us: int, wanted: list[tuple[int, str, int]]) -> list[Delivery]:
        found: list[Delivery] = self.writer.call(lambda conn: deliveries.claim_due(conn, now_us, lease_us, wanted))
        return found

    def finish_deliveries(self, results: list[DeliveryResult], now_us: int) -> None:
        self.writer.call(lambda conn: deliveries.finish(conn, results, now_us))

    def list_deliveries(
        self, workspace_id: int, target: str, state: str | None, before_id: int | None, limit: int
    ) -> list[Delivery]:
        return deliveries.list_deliveries(self._reader(), workspace_id, target, state, before_id, limit)

    def replay_deliveries(self, workspace_id: int, target: str, delivery_id: int | None, now_us: int) -> int:
        count: int = self.writer.call(lambda conn: deliveries.replay(conn, workspace_id, target, delivery_id, now_us))
        return count

    def delivery_counts(self, workspace_id: int, target: str) -> dict[str, int]:
        return deliveries.counts(self._reader(), workspace_id, target)

    def delete_deliveries(self, workspace_id: int, target: str) -> None:
        self.writer.call(lambda conn: deliveries.delete_target(conn, workspace_id, target))

    def events_at(self, workspace_id: int, seqs: list[int]) -> list[StoredEvent]:
        return event_reader.events_at(self._reader(), workspace_id, seqs)

    # definitions -------------------------------------------------------------------
    def create_definition(
        self, workspace_id: int, kind: str, name: str, path: str | None, body: dict[str, Any], now_us: int
    ) -> DefinitionRecord:
        text = orjson.dumps(body).decode()

        def fn(conn: sqlite3.Connection) -> DefinitionRecord:
            if conn.execute(
                "SELECT 1 FROM definitions WHERE ws_id=? AND kind=? AND name=?", (workspace_id, kind, name)
            ).fetchone():
                raise Conflict(f"{kind} {name!r} already exists", code="already_exists", field="name")
            _check_path_free(conn, workspace_id, kind, name, path)
            conn.execute(
                "INSERT INTO definitions (ws_id, kind, name, path, body, version, created_at_us, updated_at_us)"
                " VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                (workspace_id, kind, name, path, text, now_us, now_us),
            )
            return DefinitionRecord(kind, name, body, 1, now_us, now_us)

        result: DefinitionRecord = self.writer.call(fn)
        return result

    def replace_definition(
        self, workspace_id: int, kind: str, name: str, path: str | None, body: dict[str, Any], now_us: int
    ) -> DefinitionRecord:
        text = orjson.dumps(body).decode()

        def fn(conn: sqlite3.Connection) -> DefinitionRecord:
            row = conn.execute(
                "SELECT version, created_at_us FROM definitions WHERE ws_id=? AND kind=? AND name=?",
                (workspace_id, kind, name),
            ).fetchone()
            if row is None:
                raise NotFound(f"{kind} {name!r} does not exist", code=f"{kind}_not_found")
            _check_path_free(conn, workspace_id, kind, name, path)
            conn.execute(
                "UPDATE definitions SET path=?, body=?, version=version+1, updated_at_us=?"
                " WHERE ws_id=? AND kind=? AND name=?",
                (path, text, now_us, workspace_id, kind, name),
            )
            return DefinitionRecord(kind, name, body, row[0] + 1, row[1], now_us)

        result: DefinitionRecord = self.writer.call(fn)
        return result

    def delete_definition(self, workspace_id: int, kind: str, name: str) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "DELETE FROM definitions WHERE ws_id=? AND kind=? AND name=?", (workspace_id, kind, name)
            )
            if cur.rowcount == 0:
                raise NotFound(f"{kind} {name!r} does not exist", code=f"{kind}_not_found")

        self.writer.call(fn)

    def get_definition(self, workspace_id: int, kind: str, name: str) -> DefinitionRecord | None:
        row = (
            self._reader()
            .execute(
                f"SELECT {_DEF_COLUMNS} FROM definitions WHERE ws_id=? AND kind=? AND name=?",  # noqa: S608
                (workspace_id, kind, name),
            )
            .fetchone()
        )
        return None if row is None else _definition(row)

    def find_definition_by_path(self, workspace_id: int, kind: str, path: str) -> DefinitionRecord | None:
        row = (
            self._reader()
            .execute(
                f"SELECT {_DEF_COLUMNS} FROM definitions WHERE ws_id=? AND kind=? AND path=?",  # noqa: S608
                (workspace_id, kind, path),
            )
            .fetchone()
        )
        return None if row is None else _definition(row)

    def list_definitions(self, workspace_id: int, kind: str) -> list[DefinitionRecord]:
        rows = self._reader().execute(
            f"SELECT {_DEF_COLUMNS} FROM definitions WHERE ws_id=? AND kind=? ORDER BY name",  # noqa: S608
            (workspace_id, kind),
        )
        return [_definition(r) for r in rows]

    # tokens ------------------------------------------------------------------------
    def create_token(
        self, workspace_id: int, name: str, token_hash: str, scopes: tuple[str, ...], now_us: int
    ) -> TokenRecord:
        def fn(conn: sqlite3.Connection) -> TokenRecord:
            cur = conn.execute(
                "INSERT INTO tokens (ws_id, name, token_hash, scopes, created_at_us) VALUES (?, ?, ?, ?, ?)",
                (workspace_id, name, token_hash, orjson.dumps(list(scopes)).decode(), now_us),
            )
            assert cur.lastrowid is not None
            return TokenRecord(cur.lastrowid, workspace_id, name, scopes, now_us)

        result: TokenRecord = self.writer.call(fn)
        return result

    def find_token(self, token_hash: str) -> TokenRecord | None:
        row = (
            self._reader()
            .execute(
                "SELECT id, ws_id, name, scopes, created_at_us, expires_at_us FROM tokens WHERE token_hash=?",
                (token_hash,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return TokenRecord(row[0], row[1], row[2], tuple(orjson.loads(row[3])), row[4], row[5])

    # quarantine --------------------------------------------------------------------
    def add_quarantine(self, entry: QuarantineEntry) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO quarantine (ws_id, at_us, source, reason, message, principal, content_type,"
                " body_size, body_head, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.workspace_id,
                    entry.at_us,
                    entry.source,
                    entry.reason,
                    entry.message,
                    entry.principal,
                    entry.content_type,
                    entry.body_size,
                    entry.body_head,
                    orjson.dumps(entry.details).decode(),
                ),
            )

        self.writer.call_later(fn)

    def list_quarantine(self, workspace_id: int, limit: int, before_id: int | None) -> list[QuarantineEntry]:
        rows = self._reader().execute(
            "SELECT id, at_us, source, reason, message, principal, content_type, body_size, body_head, details"
            " FROM quarantine WHERE ws_id=? AND id < ? ORDER BY id DESC LIMIT ?",
            (workspace_id, before_id if before_id is not None else 1 << 62, limit),
        )
        return [
            QuarantineEntry(
                workspace_id=workspace_id,
                id=r[0],
                at_us=r[1],
                source=r[2],
                reason=r[3],
                message=r[4],
                principal=r[5],
                content_type=r[6],
                body_size=r[7],
                body_head=bytes(r[8]),
                details=orjson.loads(r[9]),
            )
            for r in rows
        ]

    # housekeeping ------------------------------------------------------------------
    def prune(
        self, now_us: int, idempotency_ttl_us: int, quarantine_keep: int, delivered_keep_us: int | None = None
    ) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            if delivered_keep_us is not None:
                deliveries.prune_delivered(conn, now_us - delivered_keep_us)
            conn.execute("DELETE FROM idempotency WHERE created_at_us < ?", (now_us - idempotency_ttl_us,))
            for (ws_id,) in conn.execute("SELECT DISTINCT ws_id FROM quarantine").fetchall():
                conn.execute(
                    "DELETE FROM quarantine WHERE ws_id=? AND id <= (SELECT id FROM quarantine WHERE ws_id=?"
                    " ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (ws_id, ws_id, quarantine_keep),
                )

        self.writer.call(fn)


def _check_path_free(conn: sqlite3.Connection, ws: int, kind: str, name: str, path: str | None) -> None:
    if path is None:
        return
    row = conn.execute(
        "SELECT name FROM definitions WHERE ws_id=? AND kind=? AND path=? AND name<>?", (ws, kind, path, name)
    ).fetchone()
    if row is not None:
        raise Conflict(f"path {path!r} is already used by {kind} {row[0]!r}", code="path_taken", field="path")
