"""Workspace settings and the email outbox (SQLite): written in transactions, read by the sender."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from iotman.storage.ports import OutboxEmail

__all__ = [
    "claim_due",
    "delete_setting",
    "enqueue",
    "get_setting",
    "list_settings",
    "list_emails",
    "mark_failed",
    "mark_sent",
    "put_setting",
]

_COLUMNS = (
    "id, ws_id, created_at_us, recipients, subject, body, state, attempts, next_attempt_us, last_error, sent_at_us"
)


def _email(row: tuple[Any, ...]) -> OutboxEmail:
    return OutboxEmail(
        id=row[0],
        workspace_id=row[1],
        created_at_us=row[2],
        recipients=orjson.loads(row[3]),
        subject=row[4],
        body=row[5],
        state=row[6],
        attempts=row[7],
        next_attempt_us=row[8],
        last_error=row[9],
        sent_at_us=row[10],
    )


def put_setting(conn: sqlite3.Connection, ws: int, name: str, body: dict[str, Any], now_us: int) -> None:
    conn.execute(
        "INSERT INTO workspace_settings (ws_id, name, body, updated_at_us) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (ws_id, name) DO UPDATE SET body = excluded.body, updated_at_us = excluded.updated_at_us",
        (ws, name, orjson.dumps(body).decode(), now_us),
    )


def get_setting(conn: sqlite3.Connection, ws: int, name: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM workspace_settings WHERE ws_id = ? AND name = ?", (ws, name)).fetchone()
    return None if row is None else dict(orjson.loads(row[0]))


def list_settings(conn: sqlite3.Connection, ws: int, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    rows = conn.execute(
        "SELECT name, body FROM workspace_settings WHERE ws_id = ? AND substr(name, 1, ?) = ? ORDER BY name",
        (ws, len(prefix), prefix),
    ).fetchall()
    return [(name, dict(orjson.loads(body))) for name, body in rows]


def delete_setting(conn: sqlite3.Connection, ws: int, name: str) -> bool:
    return conn.execute("DELETE FROM workspace_settings WHERE ws_id = ? AND name = ?", (ws, name)).rowcount > 0


def enqueue(conn: sqlite3.Connection, ws: int, recipients: list[str], subject: str, body: str, now_us: int) -> int:
    cur = conn.execute(
        "INSERT INTO email_outbox (ws_id, created_at_us, recipients, subject, body, next_attempt_us)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (ws, now_us, orjson.dumps(recipients).decode(), subject, body, now_us),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def claim_due(conn: sqlite3.Connection, now_us: int, lease_us: int, limit: int) -> list[OutboxEmail]:
    """Pending emails whose time has come and that no sender holds; held for ``lease_us``."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM email_outbox WHERE state = 'pending' AND next_attempt_us <= ?"  # noqa: S608
        " AND lease_until_us <= ? ORDER BY next_attempt_us, id LIMIT ?",
        (now_us, now_us, limit),
    ).fetchall()
    if rows:
        conn.execute(
            "UPDATE email_outbox SET lease_until_us = ? WHERE id IN (SELECT value FROM json_each(?))",
            (now_us + lease_us, orjson.dumps([r[0] for r in rows]).decode()),
        )
    return [_email(r) for r in rows]


def mark_sent(conn: sqlite3.Connection, email_id: int, now_us: int) -> None:
    conn.execute(
        "UPDATE email_outbox SET state = 'sent', attempts = attempts + 1, sent_at_us = ?, lease_until_us = 0,"
        " last_error = NULL WHERE id = ?",
        (now_us, email_id),
    )


def mark_failed(conn: sqlite3.Connection, email_id: int, error: str, next_attempt_us: int | None) -> None:
    """One more failed attempt: retried at ``next_attempt_us``, or dead when it is None."""
    conn.execute(
        "UPDATE email_outbox SET attempts = attempts + 1, last_error = ?, lease_until_us = 0,"
        " state = CASE WHEN ? IS NULL THEN 'dead' ELSE state END,"
        " next_attempt_us = coalesce(?, next_attempt_us) WHERE id = ?",
        (error[:2000], next_attempt_us, next_attempt_us, email_id),
    )


def list_emails(conn: sqlite3.Connection, ws: int, before_id: int | None, limit: int) -> list[OutboxEmail]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM email_outbox WHERE ws_id = ? AND id < ? ORDER BY id DESC LIMIT ?",  # noqa: S608
        (ws, before_id if before_id is not None else 2**62, limit),
    ).fetchall()
    return [_email(r) for r in rows]
