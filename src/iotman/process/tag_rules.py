"""Tag rules compiled for ingest (SPEC §3.1).

A query whose first step names an envelope field (``$.payload.x``, ``$.metadata.source_ip``,
``$.source``, ``$.received_at``) reads the envelope; any other (``$.x``) reads the
payload. A rule that fails on an event (a non-scalar value, an engine error) gives no
tag for that event; the failure is counted on the rule and the event is stored anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iotman.core.tag_rule import ALLOWED, NEEDS, TagMethod, TagRuleDefinition
from iotman.errors import DefinitionInvalid
from iotman.process.bounded_regex import RegexError, compile_regex
from iotman.process.jsonpath_query import MISSING, Query, compile_query
from iotman.process.tag_program import RulePlan, TagProgram, build_program

__all__ = ["ENVELOPE_FIELDS", "CompiledTagRule", "RuleStatus", "TagSet", "compile_tag_rule"]

ENVELOPE_FIELDS = frozenset({"payload", "metadata", "source", "received_at"})
Envelope = Callable[[], dict[str, Any]]
Evaluate = Callable[[Any, Envelope, str], Any]


@dataclass(slots=True)
class RuleStatus:
    """Counters visible on the rule (GET …/tag-rules/{name}); per server process."""

    failures: int = 0
    last_error: str | None = None
    last_error_at_us: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, message: str, now_us: int) -> None:
        with self.lock:
            self.failures += 1
            self.last_error = message
            self.last_error_at_us = now_us

    def to_json(self) -> dict[str, Any]:
        return {"failures": self.failures, "last_error": self.last_error}


class TagFailure(Exception):
    pass


def _reader(query: Query) -> Callable[[Any, Envelope], Any]:
    """Select the document a query reads: the envelope or the payload."""
    if query.starts_with_name() in ENVELOPE_FIELDS:
        return lambda payload, envelope: envelope()
    return lambda payload, envelope: payload


def _scalar(value: Any, where: str) -> Any:
    if value is MISSING or value is None:
        return MISSING
    if isinstance(value, (dict, list)):
        kind = "an object" if isinstance(value, dict) else "an array"
        raise TagFailure(f"{where} selected {kind}; a tag holds a string, number or boolean")
    return value


def _compile_filter(text: str) -> Callable[[Any, Envelope], bool]:
    query = compile_query(text, "filter")
    doc = _reader(query)
    first = query.path.segments[0] if query.path.segments else None
    selectors = getattr(first, "selectors", ())
    if len(query.path.segments) == 1 and selectors and type(selectors[0]).__name__ == "Filter":
        # `$[?@.temp > 30]` tests the event itself: it is evaluated on [event]
        return lambda payload, envelope: bool(query.find([doc(payload, envelope)]))
    return lambda payload, envelope: bool(query.find(doc(payload, envelope)))


def _evaluator(rule: TagRuleDefinition) -> Evaluate:
    method = rule.method
    if method is TagMethod.SOURCE:
        return lambda payload, envelope, source: source
    if method is TagMethod.CONSTANT:
        constant = rule.value
        if rule.filter is None:
            return lambda payload, envelope, source: constant
        matches = _compile_filter(rule.filter)
        return lambda payload, envelope, source: constant if matches(payload, envelope) else MISSING
    assert rule.path is not None
    query = compile_query(rule.path, "path")
    doc = _reader(query)
    if method is TagMethod.EXISTS:
        if query.steps is not None:
            return lambda payload, envelope, source: (
                1 if query.first(doc(payload, envelope)) is not MISSING else MISSING
            )
        return lambda payload, envelope, source: 1 if query.find(doc(payload, envelope)) else MISSING
    if query.steps is None:
        raise DefinitionInvalid(
            f"method {method.value!r} needs a singular path (names and indexes only, like $.a.b[0]); "
            f"{rule.path!r} can select several values",
            code="invalid_jsonpath",
            field="path",
        )
    if method is TagMethod.VALUE:
        where = f"path {rule.path}"
        return lambda payload, envelope, source: _scalar(query.first(doc(payload, envelope)), where)
    assert rule.pattern is not None
    try:
        regex = compile_regex(rule.pattern)
    except RegexError as exc:
        raise DefinitionInvalid(
            f"pattern is not a valid regular expression (RE2 syntax): {exc}", code="invalid_regex", field="pattern"
        ) from None
    grouped = regex.groups >= 1

    def by_regex(payload: Any, envelope: Envelope, source: str) -> Any:
        text = query.first(doc(payload, envelope))
        if not isinstance(text, str):
            return MISSING
        match = regex.search(text)
        if match is None:
            return MISSING
        found = match.group(1) if grouped else match.group(0)
        return MISSING if found is None else found

    return by_regex


@dataclass(frozen=True, slots=True)
class CompiledTagRule:
    name: str
    sources: frozenset[str] | None
    evaluate: Evaluate
    status: RuleStatus
    plan: RulePlan | None = None


def _plan(rule: TagRuleDefinition) -> RulePlan | None:
    """How the generated program evaluates the rule, or None to call its closure."""
    if rule.method is TagMethod.SOURCE:
        return RulePlan("source")
    if rule.method is TagMethod.CONSTANT:
        return RulePlan("constant", constant=rule.value) if rule.filter is None else None
    assert rule.path is not None
    query = compile_query(rule.path, "path")
    if query.steps is None:
        return None
    on_envelope = query.starts_with_name() in ENVELOPE_FIELDS
    if rule.method is TagMethod.REGEX:
        assert rule.pattern is not None
        regex = compile_regex(rule.pattern)
        grouped = regex.groups >= 1

        def matcher(text: str) -> Any:
            match = regex.search(text)
            if match is None:
                return MISSING
            found = match.group(1) if grouped else match.group(0)
            return MISSING if found is None else found

        return RulePlan("regex", query.steps, on_envelope, matcher=matcher)
    return RulePlan(rule.method.value, query.steps, on_envelope)


def compile_tag_rule(rule: TagRuleDefinition, status: RuleStatus | None = None) -> CompiledTagRule:
    """Check the method's fields and compile its queries; errors name the field and position."""
    for needed in NEEDS[rule.method]:
        if getattr(rule, needed) is None:
            raise DefinitionInvalid(
                f"method {rule.method.value!r} needs {needed!r}", code="invalid_definition", field=needed
            )
    for optional in ("path", "pattern", "value", "filter"):
        if getattr(rule, optional) is not None and optional not in ALLOWED[rule.method]:
            raise DefinitionInvalid(
                f"method {rule.method.value!r} does not take {optional!r}", code="invalid_definition", field=optional
            )
    sources = frozenset(rule.sources) if rule.sources is not None else None
    evaluate = _evaluator(rule)
    return CompiledTagRule(rule.name, sources, evaluate, status or RuleStatus(), _plan(rule))


class TagSet:
    """All tag rules of a workspace; per source, one generated program applies them."""

    def __init__(self, rules: list[CompiledTagRule]) -> None:
        self.rules = rules
        self._programs: dict[str, TagProgram | None] = {}

    def program(self, source: str) -> TagProgram | None:
        """``(payload, envelope, source, now_us) -> tags or None``; None when no rule applies."""
        if source in self._programs:
            return self._programs[source]
        rules = [r for r in self.rules if r.sources is None or source in r.sources]
        program = None
        if rules:

            def fail(index: int, exc: BaseException, now_us: int) -> None:
                message = str(exc) if isinstance(exc, (TagFailure, ValueError)) else f"{type(exc).__name__}: {exc}"
                rules[index].status.fail(message, now_us)

            program = build_program(
                [r.name for r in rules], [r.plan for r in rules], [_raising(r) for r in rules], fail
            )
        if len(self._programs) > 10_000:
            self._programs.clear()
        self._programs[source] = program
        return program

    def apply(self, source: str, payload: Any, envelope: Envelope, now_us: int) -> dict[str, Any] | None:
        program = self.program(source)
        return None if program is None else program(payload, envelope, source, now_us)


def _raising(rule: CompiledTagRule) -> Evaluate:
    """The closure of a rule the generator does not specialise (its failures raise)."""
    return rule.evaluate
