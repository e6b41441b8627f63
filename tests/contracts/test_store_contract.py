"""The storage contract: every adapter must pass this suite unchanged.

Add an adapter by adding a factory to ``STORES``; the PostgreSQL adapter will join
here (issue 10).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iotman.core.clock import FixedClock
from iotman.core.ids import ulid_timestamp_ms
from iotman.errors import Conflict, NotFound, StorageFailure
from iotman.storage.ports import (
    AppendBatch,
    AppendOutcome,
    EventQuery,
    FoldBatch,
    FoldGroup,
    FoldOutcome,
    QuarantineEntry,
    Store,
    StoredEvent,
)
from iotman.storage.sqlite import SqliteStore

T0 = 1_795_428_000_000_000


def sqlite_store(tmp: Path, clock: FixedClock) -> Store:
    return SqliteStore(str(tmp / "store.db"), clock=clock, idempotency_ttl_us=3_600_000_000)


STORES: dict[str, Callable[[Path, FixedClock], Store]] = {"sqlite": sqlite_store}


@pytest.fixture(params=sorted(STORES))
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    clock = FixedClock(T0)
    return lambda: STORES[request.param](tmp_path, clock)


@pytest.fixture
def store(factory: Callable[[], Store]) -> Iterator[Store]:
    s = factory()
    s.open()
    yield s
    s.close()


def batch(ws: int, *payloads: str, source: str = "readings", at: int = T0, **kw: object) -> AppendBatch:
    return AppendBatch(ws, source, list(payloads), '{"auth_method":"none"}', at, **kw)  # type: ignore[arg-type]


def ws_id(store: Store, slug: str = "acme") -> int:
    return store.create_workspace(slug, f"uuid-{slug}", T0).id


def test_append_assigns_gap_free_seq_and_sorted_ids(store: Store) -> None:
    ws = ws_id(store)
    one = store.append(batch(ws, "1"))
    many = store.append(batch(ws, "2", "3", "4"))
    assert (one.first_seq, one.last_seq) == (1, 1)
    assert (many.first_seq, many.last_seq) == (2, 4)
    ids = one.ids + many.ids
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert ulid_timestamp_ms(ids[0]) == T0 // 1000
    rows = store.read_events(EventQuery(ws, limit=10, descending=False))
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert [r.payload for r in rows] == ["1", "2", "3", "4"]
    assert rows[0].id == ids[0]
    assert store.last_seq(ws) == 4
    assert store.count_events(ws) == 4


def test_received_at_never_goes_backwards(store: Store) -> None:
    ws = ws_id(store)
    store.append(batch(ws, "1", at=T0 + 10))
    late = store.append(batch(ws, "2", at=T0))
    assert late.received_at_us == T0 + 10


def test_workspaces_have_separate_logs(store: Store) -> None:
    a, b = ws_id(store, "a"), ws_id(store, "b")
    store.append(batch(a, "1", "2"))
    assert store.append(batch(b, "x")).first_seq == 1
    assert [r.payload for r in store.read_events(EventQuery(b))] == ["x"]
    store.delete_workspace(b)
    assert store.read_events(EventQuery(b)) == []
    assert store.count_events(a) == 2


def test_read_order_limits_and_cursors(store: Store) -> None:
    ws = ws_id(store)
    store.append(batch(ws, *[str(i) for i in range(1, 11)]))
    newest = store.read_events(EventQuery(ws, limit=3))
    assert [r.seq for r in newest] == [10, 9, 8]
    older = store.read_events(EventQuery(ws, limit=3, before_seq=8))
    assert [r.seq for r in older] == [7, 6, 5]
    forward = store.read_events(EventQuery(ws, limit=3, after_seq=8, descending=False))
    assert [r.seq for r in forward] == [9, 10]
    window = store.read_events(EventQuery(ws, after_seq=2, before_seq=5, descending=False))
    assert [r.seq for r in window] == [3, 4]


def test_read_by_source_uses_only_that_source(store: Store) -> None:
    ws = ws_id(store)
    store.append(batch(ws, "1", source="a"))
    store.append(batch(ws, "2", source="b"))
    store.append(batch(ws, "3", source="a"))
    assert [r.payload for r in store.read_events(EventQuery(ws, sources=("a",)))] == ["3", "1"]


def test_time_bounds(store: Store) -> None:
    ws = ws_id(store)
    for i in range(10):
        store.append(batch(ws, str(i), at=T0 + i * 1_000_000))
    rows = store.read_events(EventQuery(ws, from_us=T0 + 3_000_000, to_us=T0 + 6_000_000, descending=False))
    assert [r.payload for r in rows] == ["3", "4", "5"]
    assert store.read_events(EventQuery(ws, from_us=T0 + 100_000_000)) == []
    assert [r.payload for r in store.read_events(EventQuery(ws, to_us=T0 + 1, descending=False))] == ["0"]


def test_idempotency_replay_and_conflict(store: Store) -> None:
    ws = ws_id(store)
    first = store.append(batch(ws, "1", idempotency_key="k", fingerprint="f1", idempotency_scope="readings"))
    again = store.append(batch(ws, "1", idempotency_key="k", fingerprint="f1", idempotency_scope="readings"))
    assert again.replayed
    assert (again.ids, again.first_seq) == (first.ids, first.first_seq)
    with pytest.raises(Conflict):
        store.append(batch(ws, "2", idempotency_key="k", fingerprint="f2", idempotency_scope="readings"))
    other_scope = store.append(batch(ws, "1", idempotency_key="k", fingerprint="f1", idempotency_scope="other"))
    assert not other_scope.replayed
    assert store.count_events(ws) == 2


def test_concurrent_appends_share_commits_and_all_land(store: Store) -> None:
    ws = ws_id(store)
    outcomes: list[AppendOutcome] = []
    lock = threading.Lock()
    done = threading.Event()
    total = 2000

    def record(outcome: AppendOutcome) -> None:
        with lock:
            outcomes.append(outcome)
            if len(outcomes) == total:
                done.set()

    def producer(offset: int) -> None:
        for i in range(total // 4):
            store.submit(batch(ws, str(offset + i)), record)

    threads = [threading.Thread(target=producer, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done.wait(30)
    seqs = sorted(o.first_seq for o in outcomes if not isinstance(o, Exception))
    assert seqs == list(range(1, total + 1))
    assert store.count_events(ws) == total


def test_a_failing_append_fails_alone_and_leaves_no_gap(store: Store) -> None:
    ws = ws_id(store)
    results: list[AppendOutcome] = []
    ready = threading.Event()

    def record(outcome: AppendOutcome) -> None:
        results.append(outcome)
        if len(results) == 3:
            ready.set()

    store.flush()
    store.submit(batch(ws, "1"), record)
    store.submit(batch(ws, None), record)  # type: ignore[arg-type]  # NOT NULL payload: the driver refuses
    store.submit(batch(ws, "3"), record)
    assert ready.wait(10)
    failures = [r for r in results if isinstance(r, StorageFailure)]
    assert len(failures) == 1
    rows = store.read_events(EventQuery(ws, descending=False))
    assert [r.seq for r in rows] == [1, 2]
    assert [r.payload for r in rows] == ["1", "3"]


def test_reopen_continues_the_log(factory: Callable[[], Store]) -> None:
    s = factory()
    s.open()
    ws = ws_id(s)
    s.append(batch(ws, "1", "2"))
    s.close()
    again = factory()
    again.open()
    assert again.append(batch(ws, "3")).first_seq == 3
    again.close()


def test_definitions(store: Store) -> None:
    ws = ws_id(store)
    created = store.create_definition(ws, "source", "a", "pa", {"name": "a"}, T0)
    assert created.version == 1
    with pytest.raises(Conflict):
        store.create_definition(ws, "source", "a", "pz", {"name": "a"}, T0)
    with pytest.raises(Conflict) as taken:
        store.create_definition(ws, "source", "b", "pa", {"name": "b"}, T0)
    assert taken.value.code == "path_taken"
    replaced = store.replace_definition(ws, "source", "a", "pb", {"name": "a", "x": 1}, T0 + 1)
    assert replaced.version == 2
    assert store.find_definition_by_path(ws, "source", "pb") is not None
    assert store.find_definition_by_path(ws, "source", "pa") is None
    got = store.get_definition(ws, "source", "a")
    assert got is not None
    assert got.body == {"name": "a", "x": 1}
    assert [d.name for d in store.list_definitions(ws, "source")] == ["a"]
    store.delete_definition(ws, "source", "a")
    with pytest.raises(NotFound):
        store.delete_definition(ws, "source", "a")
    with pytest.raises(NotFound):
        store.replace_definition(ws, "source", "a", None, {}, T0)


def test_workspaces_and_tokens(store: Store) -> None:
    keep = store.create_workspace("keep", "u-0", T0)
    ws = store.create_workspace("acme", "u-1", T0)
    with pytest.raises(Conflict):
        store.create_workspace("acme", "u-2", T0)
    assert store.get_workspace("acme") == ws
    assert store.get_workspace("nope") is None
    token = store.create_token(ws.id, "boot", "hash-1", ("iotman:*",), T0)
    found = store.find_token("hash-1")
    assert found is not None
    assert (found.id, found.workspace_id, found.scopes) == (token.id, ws.id, ("iotman:*",))
    assert store.find_token("hash-2") is None
    store.delete_workspace(ws.id)
    assert store.find_token("hash-1") is None
    # ids are never reused: a new workspace never inherits old positions
    assert store.create_workspace("acme", "u-3", T0).id != ws.id
    store.delete_workspace(store.get_workspace("acme").id)  # type: ignore[union-attr]
    with pytest.raises(Conflict) as last:
        store.delete_workspace(keep.id)
    assert last.value.code == "last_workspace"


def test_appends_queued_for_a_deleted_workspace_are_refused(store: Store) -> None:
    a, b = ws_id(store, "a"), ws_id(store, "b")
    store.delete_workspace(b)
    with pytest.raises(NotFound):
        store.append(batch(b, "1"))
    assert store.append(batch(a, "1")).first_seq == 1


def test_quarantine_and_pruning(store: Store) -> None:
    ws = ws_id(store)
    for i in range(5):
        store.add_quarantine(QuarantineEntry(ws, T0 + i, "invalid_json", f"bad {i}", body_head=b"{", body_size=1))
    store.flush()
    entries = store.list_quarantine(ws, 10, None)
    assert [e.message for e in entries] == ["bad 4", "bad 3", "bad 2", "bad 1", "bad 0"]
    assert store.list_quarantine(ws, 2, entries[1].id)[0].message == "bad 2"
    store.prune(T0, 1, quarantine_keep=2)
    assert [e.message for e in store.list_quarantine(ws, 10, None)] == ["bad 4", "bad 3"]


def test_read_by_several_sources_merges_in_order(store: Store) -> None:
    ws = ws_id(store)
    for i, source in enumerate("abcabc"):
        store.append(batch(ws, str(i), source=source))
    rows = store.read_events(EventQuery(ws, sources=("a", "c"), limit=3))
    assert [r.payload for r in rows] == ["5", "3", "2"]
    rows = store.read_events(EventQuery(ws, sources=("a", "c"), descending=False))
    assert [r.payload for r in rows] == ["0", "2", "3", "5"]


def test_tags_are_stored_and_selected_through_indexes(store: Store) -> None:
    ws = ws_id(store)
    store.ensure_tag_index({"device_id": "d-1"})
    store.ensure_tag_index({"alarm": "*"})
    store.ensure_tag_index({"device_id": "d-2"})  # idempotent: the same index
    tags = ['{"device_id":"d-1"}', '{"device_id":"d-2","alarm":1}', None, '{"device_id":"d-1","alarm":1}']
    store.append(AppendBatch(ws, "readings", ["1", "2", "3", "4"], "{}", T0, tags=tags))
    store.append(batch(ws, "5", source="other"))
    assert [r.payload for r in store.read_events(EventQuery(ws, tags={"device_id": "d-1"}))] == ["4", "1"]
    assert [r.payload for r in store.read_events(EventQuery(ws, tags={"alarm": "*"}))] == ["4", "2"]
    both = store.read_events(EventQuery(ws, tags={"alarm": "*", "device_id": "d-1"}))
    assert [r.payload for r in both] == ["4"]
    assert store.read_events(EventQuery(ws, tags={"device_id": "d-1"}, sources=("other",))) == []
    row = store.read_events(EventQuery(ws, tags={"device_id": "d-2"}))[0]
    assert row.tags == '{"device_id":"d-2","alarm":1}'


def test_a_selection_by_tag_works_before_any_output_asked_for_its_index(store: Store) -> None:
    ws = ws_id(store)
    tags = ['{"zone":"a"}', '{"zone":"b"}', '{"zone":"a"}']
    store.append(AppendBatch(ws, "readings", ["1", "2", "3"], "{}", T0, tags=tags))
    assert [r.payload for r in store.read_events(EventQuery(ws, tags={"zone": "a"}))] == ["3", "1"]
    assert [r.payload for r in store.read_events(EventQuery(ws, tags={"zone": "*"}))] == ["3", "2", "1"]


TRICKY_TEXTS = [
    '{"s":"plain"}',
    '{"s":"quote \\" backslash \\\\ slash \\/"}',
    '{"s":"nul \\u0000 tab \\t newline \\n"}',
    '{"s":"unicode é ß 中文 🎉 \\ud83c\\udf89"}',
    '{"s":"' + "x" * 70_000 + '"}',
    "[]",
    "1e400",
    '"just a string"',
    "null",
]


@pytest.mark.parametrize("own_metadata", [False, True])
def test_large_batches_keep_every_text_exactly(store: Store, own_metadata: bool) -> None:
    """Batches past a few events take the one-statement insert; nothing may change on the way."""
    ws = ws_id(store)
    payloads = TRICKY_TEXTS * 3
    tags: list[str | None] = [
        None if i % 3 == 0 else '{"k":"v\\"' + str(i) + '","é":true}' for i in range(len(payloads))
    ]
    metadata = [f'{{"n":{i},"note":"ü\\u0001"}}' for i in range(len(payloads))] if own_metadata else None
    result = store.append(
        AppendBatch(ws, "readings", payloads, '{"auth_method":"none"}', T0, tags=tags, event_metadata=metadata)
    )
    assert (result.first_seq, result.last_seq) == (1, len(payloads))
    untagged = store.append(batch(ws, *TRICKY_TEXTS))  # no tags, shared metadata
    rows = store.read_events(EventQuery(ws, descending=False, limit=100))
    assert [r.payload for r in rows] == payloads + TRICKY_TEXTS
    assert [r.tags for r in rows] == tags + [None] * len(TRICKY_TEXTS)
    expected_meta = metadata or ['{"auth_method":"none"}'] * len(payloads)
    assert [r.metadata for r in rows] == expected_meta + ['{"auth_method":"none"}'] * len(TRICKY_TEXTS)
    assert [r.id for r in rows] == result.ids + untagged.ids
    assert [r.seq for r in rows] == list(range(1, len(payloads) + len(TRICKY_TEXTS) + 1))


class _CountingFold:
    """A plain ViewFold for the contract: counts events per payload text, skips "skip"."""

    name = "counts"

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, list[int]]] = []

    def key(self, event: StoredEvent) -> str | None:
        return None if event.payload == '"skip"' else event.payload

    def keys(self, batch: FoldBatch) -> list[str | None]:
        return [self.key(event) for event in batch.events]

    def fold(self, batch: FoldBatch, groups: list[FoldGroup]) -> list[FoldOutcome]:
        outcomes = []
        for group in groups:
            events = [batch.events[i] for i in group.events]
            self.calls.append((group.prev, [e.seq for e in events]))
            outcomes.append(FoldOutcome(str(int(group.prev or "0") + len(events)), events[-1].seq))
        return outcomes


def test_views_fold_in_the_append_transaction_once_per_key_and_batch(store: Store) -> None:
    ws = ws_id(store)
    fold = _CountingFold()
    store.append(batch(ws, '"a"', '"b"', '"a"', '"skip"', '"a"', '"c"', folds=[fold]))
    assert sorted(fold.calls) == [(None, [1, 3, 5]), (None, [2]), (None, [6])]
    store.append(batch(ws, '"a"', folds=[fold]))
    assert fold.calls[-1] == ("3", [7])
    row = store.view_row(ws, "counts", '"a"')
    assert row is not None
    assert (row.value, row.seq, row.updated_at_us) == ("4", 7, T0)
    assert [r.key for r in store.view_rows(ws, "counts", "", None, 10)] == ['"a"', '"b"', '"c"']
    assert [r.key for r in store.view_rows(ws, "counts", "", '"a"', 1)] == ['"b"']
    assert store.view_rows(ws, "counts", '"c', None, 10)[0].key == '"c"'
    store.delete_view_rows(ws, "counts")
    assert store.view_row(ws, "counts", '"a"') is None


def test_prefix_scans_treat_every_character_literally(store: Store) -> None:
    ws = ws_id(store)

    class KeyFold(_CountingFold):
        def key(self, event: StoredEvent) -> str | None:
            return str(event.payload)

    keys = ["a%", "a_b", "ab", "a\U0010ffff", "a\U0010ffffz", "b", "a", "é", "éa"]
    store.append(batch(ws, *keys, folds=[KeyFold()]))

    def scan(prefix: str) -> list[str]:
        return [r.key for r in store.view_rows(ws, "counts", prefix, None, 100)]

    assert scan("a%") == ["a%"]
    assert scan("a_") == ["a_b"]
    assert scan("a") == sorted(k for k in keys if k.startswith("a"))
    assert scan("a\U0010ffff") == ["a\U0010ffff", "a\U0010ffffz"]
    assert scan("é") == ["é", "éa"]
    assert scan("") == sorted(keys)


def test_a_rebuild_whose_definition_changed_swaps_nothing(store: Store) -> None:
    ws = ws_id(store)
    record = store.create_definition(ws, "view", "counts", None, {"name": "counts"}, T0)
    store.append(batch(ws, '"a"', '"b"', folds=[_CountingFold()]))
    shadow = _CountingFold()
    shadow.name = "counts rebuild"
    stale = ("view", record.version + 1, record.created_at_us)
    assert store.finish_rebuild(ws, shadow, "counts", None, 0, T0, stale) is None
    assert store.view_rows(ws, "counts rebuild", "", None, 10) == []
    assert [r.value for r in store.view_rows(ws, "counts", "", None, 10)] == ["1", "1"]
    current = ("view", record.version, record.created_at_us)
    assert store.finish_rebuild(ws, shadow, "counts", None, 0, T0, current) == 2
    assert [(r.key, r.value) for r in store.view_rows(ws, "counts", "", None, 10)] == [('"a"', "1"), ('"b"', "1")]


class _Stop(Exception):
    pass


def test_a_transaction_sees_its_own_writes_and_is_kept_or_undone_whole(store: Store) -> None:
    ws = ws_id(store)
    store.append(batch(ws, '"before"'))
    fold = _CountingFold()

    def work() -> list[str]:
        store.append(batch(ws, '"a"', '"b"', folds=[fold]))
        store.create_definition(ws, "view", "made-inside", None, {"name": "made-inside"}, T0)
        seen = [e.payload for e in store.read_events(EventQuery(ws, descending=False, limit=10))]
        assert store.view_row(ws, "counts", '"a"') is not None  # its own fold is visible inside
        assert store.get_definition(ws, "view", "made-inside") is not None
        return seen

    assert store.transaction(work) == ['"before"', '"a"', '"b"']
    assert store.last_seq(ws) == 3
    assert store.get_definition(ws, "view", "made-inside") is not None

    def failing() -> None:
        store.append(batch(ws, '"undone"', folds=[fold]))
        store.delete_definition(ws, "view", "made-inside")
        raise _Stop

    with pytest.raises(_Stop):
        store.transaction(failing)
    assert store.transaction(lambda: store.append(batch(ws, '"x"')).first_seq, keep=False) == 4
    assert store.last_seq(ws) == 3  # both undone
    assert store.get_definition(ws, "view", "made-inside") is not None
    assert store.view_row(ws, "counts", '"undone"') is None
    assert store.append(batch(ws, '"after"')).first_seq == 4  # no gap

    def outer() -> None:
        store.append(batch(ws, '"outer"'))
        with pytest.raises(_Stop):
            store.transaction(failing)  # nested: only its own work is undone
        store.transaction(lambda: store.append(batch(ws, '"inner kept"')))

    store.transaction(outer)
    assert [e.payload for e in store.read_events(EventQuery(ws, descending=False, after_seq=3, limit=10))] == [
        '"after"',
        '"outer"',
        '"inner kept"',
    ]
