"""Fuzzing what definitions take: queries, constructors and tag rules.

Any text either compiles or is refused with a DefinitionInvalid naming the field and
a position inside the text; a compiled constructor or tag program renders any JSON
value without raising (except StrictMissing for ``strict``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from iotman.core.tag_rule import TagRuleDefinition
from iotman.errors import DefinitionInvalid
from iotman.process.constructor import EventView, StrictMissing, compile_constructor
from iotman.process.jsonpath_query import compile_query
from iotman.process.tag_rules import TagSet, compile_tag_rule

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)

# fragments that make random text look like constructors and queries often enough
FRAGMENTS = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "?",
        "$",
        ".",
        "a",
        "b",
        "x1",
        "strict ",
        "$.a",
        "$.b[0]",
        "$[*]",
        "[?@.v > 1]",
        "$tags",
        "$seq",
        "$received_at",
        "$nope",
        '"k"',
        "'s'",
        "1",
        "-2.5",
        "true",
        "null",
        " ",
        "..",
        "@",
        "(",
        ")",
    ]
)


def attempt(fn: Any, *args: Any) -> tuple[Any, DefinitionInvalid | None]:
    try:
        return fn(*args), None
    except DefinitionInvalid as exc:
        return None, exc


def check_refusal(error: DefinitionInvalid, text: str, fields: tuple[str, ...]) -> None:
    assert error.field in fields
    assert error.position is None or 0 <= error.position <= len(text)


texts = st.one_of(st.text(max_size=40), st.lists(FRAGMENTS, max_size=20).map("".join))


@settings(max_examples=800)
@given(text=texts, payload=json_values)
def test_constructors_compile_or_refuse_and_always_render(text: str, payload: Any) -> None:
    constructor, error = attempt(compile_constructor, text)
    if error is not None:
        check_refusal(error, text, ("constructor",))
        return
    view = EventView(payload, seq=1, id="x", source="s", received_at="t", tags={"k": 1}, metadata={})
    with contextlib.suppress(StrictMissing):
        constructor.render(view)


@settings(max_examples=800)
@given(text=texts, document=json_values)
def test_queries_compile_or_refuse(text: str, document: Any) -> None:
    query, error = attempt(compile_query, text, "path")
    if error is not None:
        check_refusal(error, text, ("path",))
        return
    nodes = query.find(document)
    assert isinstance(nodes, list)
    if query.singular:
        assert nodes == query.engine_find(document)


@settings(max_examples=400)
@given(
    method=st.sampled_from(["value", "exists", "regex"]),
    path=texts,
    pattern=st.text(max_size=12),
    payload=json_values,
)
def test_tag_rules_compile_or_refuse_and_never_fail_ingest(method: str, path: str, pattern: str, payload: Any) -> None:
    fields: dict[str, Any] = {"name": "t", "method": method, "path": path}
    if method == "regex":
        fields["pattern"] = pattern
    rule, error = attempt(compile_tag_rule, TagRuleDefinition.model_validate(fields))
    if error is not None:
        check_refusal(error, path, ("path", "pattern"))
        return
    tags = TagSet([rule]).apply("s", payload, lambda: {"payload": payload}, 0)
    assert tags is None or set(tags) == {"t"}
