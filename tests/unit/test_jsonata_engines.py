"""The JSONata interface, the same for both adapters: values, undefined, bindings, errors, limits."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from iotman.compute.jlens_engine import JlensEngine
from iotman.compute.jsonata2py_engine import Jsonata2pyEngine
from iotman.compute.jsonata_engine import (
    UNDEFINED,
    EvalLimits,
    JsonataEngine,
    JsonataEvaluationError,
    JsonataLimitExceeded,
    JsonataSyntaxError,
)
from iotman.compute.jsonata_fields import compile_jsonata_field, engine_named
from iotman.errors import ConfigurationError, DefinitionInvalid

LIMITS = EvalLimits(timeout_s=0.5, max_steps=100_000, max_depth=100, max_result_bytes=10_000)
ENGINES = [JlensEngine(), Jsonata2pyEngine(LIMITS)]


@pytest.fixture(params=ENGINES, ids=lambda e: e.name)
def engine(request: pytest.FixtureRequest) -> JsonataEngine:
    result: JsonataEngine = request.param
    return result


def test_values_undefined_and_null_are_told_apart(engine: JsonataEngine) -> None:
    event = {"payload": {"t": 21.5, "ok": True, "tags": ["a", "b"]}, "seq": 7}
    assert engine.compile("payload.t * 2").evaluate(event) == 43.0
    assert engine.compile("payload.missing").evaluate(event) is UNDEFINED
    assert engine.compile("null").evaluate(event) is None
    assert engine.compile("payload.tags[1]").evaluate(event) == "b"
    assert engine.compile("{'n': $count(payload.tags), 'ok': payload.ok}").evaluate(event) == {"n": 2, "ok": True}
    assert engine.compile("42").evaluate(UNDEFINED) == 42


def test_json_text_in_and_out(engine: JsonataEngine) -> None:
    compiled = engine.compile("$merge([prev, {'count': (prev.count ? prev.count : 0) + 1}])")
    assert compiled.evaluate_json('{"prev": {"count": 2, "x": "é"}}') in ('{"count":3,"x":"é"}', '{"x":"é","count":3}')
    assert engine.compile("nothing").evaluate_json('{"a": 1}') is None
    assert engine.compile("null").evaluate_json(None) == "null"


def test_bindings(engine: JsonataEngine) -> None:
    compiled = engine.compile("$limit + $count(items)")
    assert compiled.evaluate({"items": [1, 2, 3]}, {"limit": 10}) == 13


class _HostStop(Exception):
    pass


def test_host_functions_run_and_their_own_exceptions_pass_through(engine: JsonataEngine) -> None:
    def stop(status: int, message: str) -> None:
        raise _HostStop(status, message)

    def double(value: float) -> float:
        return value * 2

    compiled = engine.compile("$x > 1 ? $double($x) : $stop(409, 'too small')")
    assert compiled.evaluate(None, {"x": 3, "double": double, "stop": stop}) == 6
    with pytest.raises(_HostStop) as raised:
        compiled.evaluate(None, {"x": 0, "double": double, "stop": stop})
    assert raised.value.args == (409, "too small")


def test_syntax_errors_have_a_code_and_a_position(engine: JsonataEngine) -> None:
    with pytest.raises(JsonataSyntaxError) as caught:
        engine.compile("payload.items[")
    assert caught.value.code.startswith("S0")
    assert caught.value.position == 14


def test_evaluation_errors_have_the_jsonata_code(engine: JsonataEngine) -> None:
    with pytest.raises(JsonataEvaluationError) as caught:
        engine.compile("payload.name + 1").evaluate({"payload": {"name": "x"}})
    assert caught.value.code == "T2001"
    with pytest.raises(JsonataEvaluationError) as raised:
        engine.compile("$error('no reading')").evaluate({})
    assert raised.value.code == "D3137"
    assert "no reading" in raised.value.message


def test_runaway_recursion_is_stopped_quickly(engine: JsonataEngine) -> None:
    started = time.monotonic()
    with pytest.raises(JsonataLimitExceeded):
        engine.compile("($f := function($n){ $f($n + 1) }; $f(1))").evaluate(UNDEFINED, None, LIMITS)
    assert time.monotonic() - started < 5


def test_jlens_caps_steps_and_sizes() -> None:
    engine = JlensEngine()
    with pytest.raises(JsonataLimitExceeded) as steps:
        engine.compile("[1..100000].($ * 2) ~> $sum()").evaluate(UNDEFINED, None, LIMITS)
    assert steps.value.code == "U1006"
    with pytest.raises(JsonataLimitExceeded) as size:
        engine.compile("$join([1..5000].$string(), ',')").evaluate(UNDEFINED, None, LIMITS)
    assert size.value.code == "U1001"
    with pytest.raises(JsonataLimitExceeded) as slow:
        engine.compile("($f := function($n){ $f($n + 1) }; $f(1))").evaluate(
            UNDEFINED, None, EvalLimits(0.05, None, None, None)
        )
    assert slow.value.code in {"D1011", "D1012"}


def test_compiled_expressions_are_shared_between_threads(engine: JsonataEngine) -> None:
    compiled = engine.compile("$sum(values) + $offset")
    results: list[Any] = []

    def work(offset: int) -> None:
        for i in range(200):
            results.append(compiled.evaluate({"values": [i, offset]}, {"offset": offset}) == i + 2 * offset)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 800
    assert all(results)


def test_definition_fields_explain_syntax_errors_with_a_caret(engine: JsonataEngine) -> None:
    with pytest.raises(DefinitionInvalid) as caught:
        compile_jsonata_field(engine, "payload.items[", "reducer")
    error = caught.value
    assert error.code == "invalid_jsonata"
    assert error.field == "reducer"
    assert error.position == 14
    assert error.details["excerpt"] == "payload.items[\n              ^"
    with pytest.raises(DefinitionInvalid) as empty:
        compile_jsonata_field(engine, "  ", "key")
    assert empty.value.code == "invalid_jsonata"


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [("$.payload.device_id", "'payload.device_id'"), ("$..id", None), ("payload.items[?(@.v > 1)]", None)],
)
def test_jsonpath_in_a_jsonata_field_is_refused_with_the_language(text: str, suggestion: str | None) -> None:
    with pytest.raises(DefinitionInvalid) as caught:
        compile_jsonata_field(JlensEngine(), text, "key")
    assert caught.value.code == "wrong_expression_language"
    assert "takes JSONata" in caught.value.message
    if suggestion:
        assert suggestion in caught.value.message


def test_jsonata_that_looks_a_little_like_jsonpath_is_accepted() -> None:
    engine = JlensEngine()
    for text in ("$prev.count + 1", "Account.Order@$o.Product", "$sum(payload.values)", "$"):
        compile_jsonata_field(engine, text, "reducer")


def test_unknown_engine_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        engine_named("jsonata-js", LIMITS)


def test_an_at_sign_inside_a_string_or_comment_is_not_jsonpath() -> None:
    engine = JlensEngine()
    for text in ('$send_email("ops@example.com", "s", "b")', "'a@b' & x", "x /* @ */", "`a@b`"):
        compile_jsonata_field(engine, text, "body")  # no wrong_expression_language
    with pytest.raises(DefinitionInvalid) as refused:
        compile_jsonata_field(engine, 'items[?(@.v > 1)] & "@"', "body")
    assert refused.value.code == "wrong_expression_language"
    assert refused.value.position == 8
