"""Store-side rendering of outputs equals the Python renderer, value for value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotman.connect.json_codec import dump_json
from iotman.core.clock import FixedClock
from iotman.process.constructor import compile_constructor
from iotman.storage.ports import AppendBatch, EventQuery, Store
from tests.contracts.test_store_contract import STORES, T0

STORE_RENDERED = [
    "{ts: $received_at, v: $.value, dev: $tags.device_id, seq: $seq}",
    '{a: $.a.b[0], neg: $.list[-1], whole: $, t: $tags, lit: [1, "x", null, true, {k: 2.5}], e: {}, z: []}',
    "[$.value, $id, $source, $source_ip, $auth_method, $ingest_context, $ingest_context.sub, $oauth2_client_id]",
    '{"quoted key": $["sp ace"], big: $.big, f: $.f, s: $.s, deep: {x: {y: $.a.b}}}',
]
PYTHON_ONLY = ["{a?: $.a}", "{a: strict $.a}", "{a: $.list[*]}", "[$.list[?@ > 1]]"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "value"]), children),
    max_leaves=12,
)


def open_store(tmp: Path) -> Store:
    store = STORES["sqlite"](tmp, FixedClock(T0))
    store.open()
    return store


def check_equal(store: Store, ws: int, text: str) -> None:
    constructor = compile_constructor(text)
    assert constructor.spec is not None, text
    query = EventQuery(ws, limit=1000, descending=False)
    by_store = [json.loads(line) for _, line in store.read_rendered(query, constructor.spec)]
    by_python = []
    for row in store.read_events(query):
        value = constructor.render_row(
            json.loads(row.payload), row.seq, row.id, row.source, row.received_at_us, None, row.metadata, None, row.tags
        )
        by_python.append(json.loads(dump_json(value)))
    assert by_store == by_python, text


PAYLOADS: list[Any] = [
    {
        "value": 21.5,
        "a": {"b": [1, 2]},
        "list": [1, 2, 3],
        "sp ace": "x",
        "big": 2**70 + 1,
        "f": 0.30000000000000004,
        "s": 'h\u00e9 "q" \\ \u0001 \u2028',
    },
    {"value": None, "a": {"b": "not a list"}},
    [1, 2],
    "just text",
    None,
    {"value": {"nested": [True, False]}, "list": []},
]


@pytest.mark.parametrize("text", STORE_RENDERED)
def test_store_rendering_equals_python(tmp_path: Path, text: str) -> None:
    store = open_store(tmp_path)
    ws = store.create_workspace("w", "u", T0).id
    metadata = (
        '{"source_ip":"203.0.113.7","auth_method":"oauth2","oauth2_client_id":"c1","ingest_context":{"sub":"u-1"}}'
    )
    tags = ['{"device_id":"d-1","n":2}', None, '{"device_id":"d-2"}', None, None, "{}"]
    store.append(AppendBatch(ws, "readings", [dump_json(p) for p in PAYLOADS], metadata, T0 + 123456, tags=tags))
    check_equal(store, ws, text)
    store.close()


def test_constructors_the_store_cannot_render_use_python() -> None:
    for text in PYTHON_ONLY:
        assert compile_constructor(text).spec is None, text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(json_values, min_size=1, max_size=8))
def test_store_rendering_equals_python_on_random_payloads(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[Any]
) -> None:
    store = open_store(tmp_path_factory.mktemp("render"))
    ws = store.create_workspace("w", "u", T0).id
    store.append(AppendBatch(ws, "s", [dump_json(p) for p in payloads], "{}", T0))
    for text in STORE_RENDERED:
        check_equal(store, ws, text)
    store.close()


@pytest.mark.parametrize("descending", [False, True])
def test_chunks_rendered_as_one_text_keep_order_and_cursor(tmp_path: Path, descending: bool) -> None:
    """read_rendered_text is read_rendered joined by newlines, for every kind of selection."""
    store = open_store(tmp_path)
    try:
        ws = store.create_workspace("acme", "uuid-acme", T0).id
        for start in range(0, 3000, 500):  # several batches, sources and tags interleaved
            payloads = [dump_json({"value": i, "s": 'é\n"x"'}) for i in range(start, start + 500)]
            tags = [dump_json({"dev": f"d{i % 3}"}) if i % 2 else None for i in range(start, start + 500)]
            store.append(AppendBatch(ws, "ab"[start // 500 % 2], payloads, "{}", T0 + start, tags=tags))
        spec = compile_constructor("{v: $.value, s: $.s, seq: $seq, dev: $tags.dev}").spec
        assert spec is not None
        selections: list[dict[str, Any]] = [
            {},
            {"sources": ("a",)},
            {"sources": ("a", "b")},
            {"tags": {"dev": "d1"}},
            {"tags": {"dev": "*"}, "sources": ("b",)},
        ]
        for selection in selections:
            for limit, after in ((1000, None), (7, 1234), (0, None), (5000, 2990)):
                cursor = {"before_seq": after} if descending else {"after_seq": after}
                query = EventQuery(ws, limit=limit, descending=descending, **cursor, **selection)  # type: ignore[arg-type]
                rows = store.read_rendered(query, spec)
                chunk = store.read_rendered_text(query, spec)
                assert chunk.text == "\n".join(text for _, text in rows), (selection, limit, after)
                assert chunk.count == len(rows)
                assert chunk.last_seq == (rows[-1][0] if rows else None)
                seqs = [json.loads(line)["seq"] for line in chunk.text.splitlines()]
                assert seqs == sorted(seqs, reverse=descending)
    finally:
        store.close()
