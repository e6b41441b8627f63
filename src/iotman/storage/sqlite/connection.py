"""Opening SQLite connections with iotman's pragmas."""

from __future__ import annotations

import os
import sqlite3

__all__ = ["EVENTS_DDL", "open_connection", "path_from_url"]

EVENTS_DDL = """
CREATE TABLE events (
    pos INTEGER PRIMARY KEY, id TEXT NOT NULL, source TEXT NOT NULL,
    received_at_us INTEGER NOT NULL, payload TEXT NOT NULL, metadata TEXT NOT NULL, tags TEXT
);
CREATE UNIQUE INDEX events_id ON events (id);
CREATE INDEX events_by_source ON events (source);
"""
"""The events table exactly as migration 0001 creates it (the benchmark baseline uses it)."""


def path_from_url(url: str) -> str:
    """``sqlite:///abs/path.db`` or ``sqlite:relative.db`` -> filesystem path."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite://") :]
    if url.startswith("sqlite:"):
        return url[len("sqlite:") :]
    return url


def open_connection(path: str, *, synchronous: str = "normal", writer: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT ourselves)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    apply_pragmas(conn, synchronous=synchronous, writer=writer)
    return conn


def apply_pragmas(conn: sqlite3.Connection, *, synchronous: str = "normal", writer: bool = False) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=268435456")
    if writer:
        conn.execute("PRAGMA wal_autocheckpoint=4000")
