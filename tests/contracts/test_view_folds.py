"""Folding views incrementally, in random batches and across restarts, equals one fresh re-fold of the log."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotman.compute.jlens_engine import JlensEngine
from iotman.compute.jsonata_engine import EvalLimits
from iotman.compute.view_fold import CompiledView, ViewStatus, compile_batch_reducer
from iotman.connect.json_codec import dump_json
from iotman.core.view import ViewDefinition
from iotman.storage.ports import AppendBatch, EventQuery
from iotman.storage.sqlite import SqliteStore
from iotman.storage.sqlite.view_rows import OVERLAP_MIN_EVENTS

T0 = 1_795_428_000_000_000
ENGINE = JlensEngine()
LIMITS = EvalLimits()
REDUCERS = {
    "last": "last",
    "count": "count",
    "first": "first",
    "stats": "{'n': prev.n + 1, 'sum': prev.sum + event.payload.v, 'max': $max([prev.max, event.payload.v])}",
    "failing": "event.payload.v > 8 ? $error('too big') : prev + event.payload.v",
}
INITS = {"stats": "{'n': 0, 'sum': 0, 'max': -1}", "failing": "0"}


def compiled(name: str) -> CompiledView:
    definition = ViewDefinition(
        name=name, key="payload.k", reducer=REDUCERS[name], init=INITS.get(name), sources=["s", "t"]
    )
    reducer = None if name in ("last", "count", "first") else ENGINE.compile(REDUCERS[name])
    init = ENGINE.compile(INITS[name]) if name in INITS else None
    batch = None if reducer is None else compile_batch_reducer(ENGINE, REDUCERS[name])
    return CompiledView(definition, ENGINE.compile("payload.k"), reducer, init, LIMITS, ViewStatus(), batch)


events = st.lists(
    st.tuples(st.sampled_from(["s", "t", "u"]), st.sampled_from(["a", "b", "c", None]), st.integers(0, 10)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    log=events,
    cuts=st.lists(st.integers(1, 60), max_size=8),
    restart_at=st.sets(st.integers(0, 8), max_size=2),
)
def test_incremental_folds_equal_a_fresh_refold(
    log: list[tuple[str, str | None, int]], cuts: list[int], restart_at: set[int]
) -> None:
    views = [compiled(name) for name in REDUCERS]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "store.db")
        store = SqliteStore(path)
        store.open()
        ws = store.create_workspace("w", "uuid-w", T0).id
        bounds = sorted({0, len(log), *(c for c in cuts if c < len(log))})
        for number, (start, end) in enumerate(itertools.pairwise(bounds)):
            if number in restart_at:
                store.close()
                store = SqliteStore(path)
                store.open()
            for source, group in itertools.groupby(log[start:end], key=lambda e: e[0]):
                payloads = [dump_json({"k": k, "v": v} if k is not None else {"v": v}) for _, k, v in group]
                folds = [v for v in views if v.applies_to(source)]
                store.append(AppendBatch(ws, source, payloads, "{}", T0 + number, folds=folds or None))
        everything = store.read_events(EventQuery(ws, limit=1000, descending=False))
        for view in views:
            fresh = view.renamed("fresh-" + view.name, ViewStatus())
            selected = [e for e in everything if view.applies_to(e.source)]
            if selected:
                store.fold_events(ws, fresh, selected, T0)
            incremental = {(r.key, r.value, r.seq) for r in store.view_rows(ws, view.name, "", None, 1000)}
            refolded = {(r.key, r.value, r.seq) for r in store.view_rows(ws, fresh.name, "", None, 1000)}
            assert incremental == refolded, view.name
        store.close()


def test_a_batch_large_enough_to_fold_beside_its_insert_equals_a_fresh_refold() -> None:
    """Batches of OVERLAP_MIN_EVENTS and more fold on the fold thread while the writer inserts them."""
    views = [compiled(name) for name in REDUCERS]
    count = OVERLAP_MIN_EVENTS * 2 + 7
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "store.db"))
        store.open()
        ws = store.create_workspace("w", "uuid-w", T0).id
        for round_ in range(2):
            payloads = [dump_json({"k": "abc"[i % 3], "v": (i + round_) % 11}) for i in range(count)]
            store.append(AppendBatch(ws, "s", payloads, "{}", T0 + round_, folds=list(views)))
        everything = store.read_events(EventQuery(ws, limit=10_000, descending=False))
        assert len(everything) == 2 * count
        for view in views:
            fresh = view.renamed("fresh-" + view.name, ViewStatus())
            store.fold_events(ws, fresh, everything, T0)
            incremental = {(r.key, r.value, r.seq) for r in store.view_rows(ws, view.name, "", None, 1000)}
            refolded = {(r.key, r.value, r.seq) for r in store.view_rows(ws, fresh.name, "", None, 1000)}
            assert incremental == refolded, view.name
            assert len(incremental) == 3, view.name
        store.close()
