from __future__ import annotations

from typing import Any

import pytest

from iotman.errors import DefinitionInvalid
from iotman.process.constructor import EventView, StrictMissing, compile_constructor

PAYLOAD = {"value": 21.5, "readings": [{"t": 1, "v": 5}, {"t": 2, "v": 15}], "alarms": [{"level": 3}], "x": None}


def render(text: str, payload: Any = PAYLOAD, **envelope: Any) -> Any:
    defaults: dict[str, Any] = {"seq": 7, "id": "01J", "source": "readings", "received_at": "2026-11-23T10:00:00Z"}
    return compile_constructor(text).render(EventView(payload, **{**defaults, **envelope}))


def test_spec_example() -> None:
    out = render(
        "{ts: $received_at, v: $.value, dev: $tags.device_id, hot?: $.alarms[?@.level > 2]}",
        tags={"device_id": "d-17"},
    )
    assert out == {"ts": "2026-11-23T10:00:00Z", "v": 21.5, "dev": "d-17", "hot": [{"level": 3}]}


def test_singular_queries_give_value_or_null() -> None:
    assert render("{a: $.readings[0].t, b: $.nothing, c: $.readings[-1].v, d: $.x}") == {
        "a": 1,
        "b": None,
        "c": 15,
        "d": None,
    }


def test_non_singular_queries_always_give_arrays() -> None:
    assert render("{big: $.readings[?@.v > 10].v, none: $.readings[?@.v > 99].v, all: $.readings[*].t}") == {
        "big": [15],
        "none": [],
        "all": [1, 2],
    }


def test_arrays_splice_non_singular_nodes() -> None:
    assert render('[$.value, $.readings[*].v, "x", 1, null, [$.readings[0].t]]') == [21.5, 5, 15, "x", 1, None, [1]]


def test_optional_members_are_dropped_when_null() -> None:
    assert render("{a?: $.nothing, b?: $.x, c?: $.value, d?: $.readings[?@.v > 99]}") == {"c": 21.5, "d": []}


def test_strict_makes_nothing_an_error() -> None:
    assert render("{v: strict $.value}") == {"v": 21.5}
    with pytest.raises(StrictMissing):
        render("{v: strict $.missing}")


def test_metadata_variables() -> None:
    out = render(
        "{seq: $seq, id: $id, src: $source, ip: $source_ip, how: $auth_method, sub: $ingest_context.sub, tags: $tags}",
        metadata={"source_ip": "203.0.113.7", "auth_method": "oauth2", "ingest_context": {"sub": "u-1"}},
        tags={"k": 1},
    )
    assert out == {
        "seq": 7,
        "id": "01J",
        "src": "readings",
        "ip": "203.0.113.7",
        "how": "oauth2",
        "sub": "u-1",
        "tags": {"k": 1},
    }


def test_nesting_literals_and_quoted_keys() -> None:
    out = render('{"a b": {c: [1, {d: $.value}], e: true, f: -1.5e2, g: "s,]}"}, h: {},}')
    assert out == {"a b": {"c": [1, {"d": 21.5}], "e": True, "f": -150.0, "g": "s,]}"}, "h": {}}


def test_queries_with_commas_and_brackets_inside() -> None:
    assert render("{x: $.readings[?@.v > 1 && @.t < 3]['v', 't']}") == {"x": [5, 1, 15, 2]}
    assert render("{x: $['a,b']}", payload={"a,b": 1}) == {"x": 1}


def test_fields_for_aggregation() -> None:
    constructor = compile_constructor("{ts: $received_at, v: $.value, n: $.a[0].b, many: $.r[*]}")
    assert [(f.name, f.payload_steps) for f in constructor.fields] == [
        ("ts", None),
        ("v", ("value",)),
        ("n", ("a", 0, "b")),
        ("many", None),
    ]


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("{a: 1, a: 2}", 7, "duplicate key"),
        ("{a: $nope}", 4, "unknown variable"),
        ("{a: $.x[}", 8, "unexpected"),
        ("{a: @.x}", 4, "starts with $"),
        ("$.x", 0, "object"),
        ("{a: $.x", 7, "expected '}'"),
        ("{a: payload.x}", 4, "expected an object"),
        ("{a: strict 1}", 11, "strict must be followed"),
        ("{a: $.x} extra", 9, "unexpected text"),
        ('{a: $["unterminated]}', 4, "unterminated"),
        ("{: 1}", 1, "member name"),
    ],
)
def test_errors_have_positions(text: str, position: int, words: str) -> None:
    with pytest.raises(DefinitionInvalid) as caught:
        compile_constructor(text)
    error = caught.value
    assert error.field == "constructor"
    assert error.position == position, error.message
    assert words in error.message
    assert error.details["excerpt"].splitlines()[1].index("^") == position
