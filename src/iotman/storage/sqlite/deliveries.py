"""The delivery outbox (SQLite): enqueued with the events, claimed by the sender with a lease,
finished in batches, listed, replayed and pruned."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from iotman.storage.ports import Delivery, DeliveryResult

__all__ = [
    "claim_due",
    "counts",
    "delete_target",
    "enqueue",
    "finish",
    "list_deliveries",
    "prune_delivered",
    "replay",
]

_COLUMNS = (
    "id, ws_id, target, seq, state, attempts, next_attempt_us, created_at_us, done_at_us,"
    " last_status, last_latency_us, last_error"
)
_LISTED = _COLUMNS + ", lease_until_us"
_ENQUEUE = (
    "INSERT INTO deliveries (ws_id, target, seq, next_attempt_us, created_at_us)"
    " SELECT ?1, json_extract(value, '$[1]'), ?2 + json_extract(value, '$[0]'), ?3, ?3 FROM json_each(?4)"
)


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(*row)


def enqueue(conn: sqlite3.Connection, ws: int, first_seq: int, matches: list[tuple[int, str]], now_us: int) -> None:
    """One pending delivery per (index of the event in its batch, target)."""
    conn.execute(_ENQUEUE, (ws, first_seq, now_us, orjson.dumps(matches).decode()))


def claim_due(
    conn: sqlite3.Connection, now_us: int, lease_us: int, wanted: list[tuple[int, str, int]]
) -> list[Delivery]:
    """For each (workspace, target, at most n) of ``wanted``: its due pending deliveries that no
    sender holds, oldest due first, held for ``lease_us`` (each one's lease is in the result)."""
    lease = now_us + lease_us
    found: list[Delivery] = []
    for ws, target, cap in wanted:
        if cap <= 0:
            continue
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM deliveries INDEXED BY deliveries_due"  # noqa: S608
            " WHERE ws_id = ? AND target = ? AND state = 'pending' AND next_attempt_us <= ? AND lease_until_us <= ?"
            " ORDER BY next_attempt_us, id LIMIT ?",
            (ws, target, now_us, now_us, cap),
        ).fetchall()
        found.extend(_delivery((*r, lease)) for r in rows)
    if found:
        conn.execute(
            "UPDATE deliveries SET lease_until_us = ? WHERE id IN (SELECT value FROM json_each(?))",
            (lease, orjson.dumps([d.id for d in found]).decode()),
        )
    return found


def finish(conn: sqlite3.Connection, results: list[DeliveryResult], now_us: int) -> None:
    """Record attempts: delivered, retried later, dead, or put back untried (``attempted`` false).

    Only while the claim holds: a result whose lease ran out (the row may have been claimed
    again since) or that was written already changes nothing."""
    rows = [
        (
            r.state,
            1 if r.attempted else 0,
            r.next_attempt_us,
            now_us if r.state != "pending" else None,
            r.status,
            r.latency_us,
            None if r.error is None else r.error[:2000],
            1 if r.attempted else 0,
            r.id,
            r.lease_until_us,
        )
        for r in results
    ]
    conn.executemany(
        "UPDATE deliveries SET state = ?1, attempts = attempts + ?2, next_attempt_us = coalesce(?3, next_attempt_us),"
        " lease_until_us = 0, done_at_us = ?4,"
        " last_status = CASE WHEN ?8 THEN ?5 ELSE last_status END,"
        " last_latency_us = CASE WHEN ?8 THEN ?6 ELSE last_latency_us END,"
        " last_error = CASE WHEN ?8 THEN ?7 ELSE last_error END"
        " WHERE id = ?9 AND state = 'pending' AND lease_until_us = ?10",
        rows,
    )


def list_deliveries(
    conn: sqlite3.Connection, ws: int, target: str, state: str | None, before_id: int | None, limit: int
) -> list[Delivery]:
    sql = f"SELECT {_LISTED} FROM deliveries WHERE ws_id = ? AND target = ? AND id < ?"  # noqa: S608
    params: list[Any] = [ws, target, before_id if before_id is not None else 2**62]
    if state is not None:
        sql += " AND state = ?"
        params.append(state)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    return [_delivery(r) for r in rows]


def replay(conn: sqlite3.Connection, ws: int, target: str, delivery_id: int | None, now_us: int) -> int:
    """Dead deliveries (one, or all of the target) pending again with fresh attempts; how many."""
    sql = (
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_us = ?, lease_until_us = 0,"
        " done_at_us = NULL WHERE ws_id = ? AND target = ? AND state = 'dead'"
    )
    params: list[Any] = [now_us, ws, target]
    if delivery_id is not None:
        sql += " AND id = ?"
        params.append(delivery_id)
    return conn.execute(sql, params).rowcount


def counts(conn: sqlite3.Connection, ws: int, target: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT state, count(*) FROM deliveries WHERE ws_id = ? AND target = ? GROUP BY state", (ws, target)
    ).fetchall()
    found = {"pending": 0, "delivered": 0, "dead": 0}
    found.update({state: n for state, n in rows})
    return found


def delete_target(conn: sqlite3.Connection, ws: int, target: str) -> None:
    conn.execute("DELETE FROM deliveries WHERE ws_id = ? AND target = ?", (ws, target))


def prune_delivered(conn: sqlite3.Connection, before_us: int) -> None:
    conn.execute("DELETE FROM deliveries WHERE state = 'delivered' AND done_at_us < ?", (before_us,))
