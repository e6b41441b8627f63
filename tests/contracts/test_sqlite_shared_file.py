"""Two stores on one SQLite file (two servers): appends from both stay gap-free."""

from __future__ import annotations

from pathlib import Path

from iotman.storage.ports import AppendBatch, EventQuery
from iotman.storage.sqlite import SqliteStore

T0 = 1_795_428_000_000_000


def test_appends_from_two_stores_on_one_file_leave_no_gap_and_no_clash(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    first, second = SqliteStore(path), SqliteStore(path)
    first.open()
    second.open()
    try:
        ws = first.create_workspace("w", "uuid-w", T0).id
        seqs = []
        for n in range(20):
            store = first if n % 3 else second
            result = store.append(AppendBatch(ws, "s", [str(n), str(n)], "{}", T0 + n))
            seqs.extend(range(result.first_seq, result.last_seq + 1))
        assert seqs == list(range(1, 41))
        assert [e.seq for e in second.read_events(EventQuery(ws, limit=100, descending=False))] == seqs
    finally:
        second.close()
        first.close()
