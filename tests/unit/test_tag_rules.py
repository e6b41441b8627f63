from __future__ import annotations

from typing import Any

import pytest

from iotman.core.tag_rule import TagRuleDefinition
from iotman.errors import DefinitionInvalid
from iotman.process.tag_rules import RuleStatus, TagSet, compile_tag_rule

ENVELOPE_METADATA = {"source_ip": "203.0.113.7", "received_at": "2026-11-23T10:00:00Z"}


def tags_of(payload: Any, *rules: dict[str, Any], source: str = "readings") -> dict[str, Any] | None:
    tag_set = TagSet([compile_tag_rule(TagRuleDefinition.model_validate(r)) for r in rules])
    envelope = {"payload": payload, "metadata": ENVELOPE_METADATA, "source": source, "received_at": "t"}
    return tag_set.apply(source, payload, lambda: envelope, 0)


def test_value() -> None:
    rule = {"name": "device_id", "method": "value", "path": "$.device_id"}
    assert tags_of({"device_id": "d-17"}, rule) == {"device_id": "d-17"}
    assert tags_of({"device_id": None}, rule) is None
    assert tags_of({}, rule) is None
    assert tags_of([1], rule) is None


def test_value_reads_metadata_and_payload_explicitly() -> None:
    ip = {"name": "ip", "method": "value", "path": "$.metadata.source_ip"}
    explicit = {"name": "v", "method": "value", "path": "$.payload.v"}
    assert tags_of({"v": 3}, ip, explicit) == {"ip": "203.0.113.7", "v": 3}


def test_exists() -> None:
    rule = {"name": "has_value", "method": "exists", "path": "$.value"}
    assert tags_of({"value": None}, rule) == {"has_value": 1}
    assert tags_of({}, rule) is None
    filtered = {"name": "alarm", "method": "exists", "path": "$.alarms[?@.level > 2]"}
    assert tags_of({"alarms": [{"level": 3}]}, filtered) == {"alarm": 1}
    assert tags_of({"alarms": [{"level": 1}]}, filtered) is None


def test_regex_first_group_or_whole_match() -> None:
    grouped = {"name": "model", "method": "regex", "path": "$.fw", "pattern": r"^(\w+)-\d"}
    whole = {"name": "ver", "method": "regex", "path": "$.fw", "pattern": r"\d+\.\d+"}
    assert tags_of({"fw": "abc-1.2"}, grouped, whole) == {"model": "abc", "ver": "1.2"}
    assert tags_of({"fw": "nomatch"}, grouped) is None
    assert tags_of({"fw": 12}, grouped) is None


def test_source_and_constant_with_filter() -> None:
    source = {"name": "src", "method": "source"}
    hot = {"name": "hot", "method": "constant", "value": "yes", "filter": "$[?@.temp > 30]"}
    always = {"name": "team", "method": "constant", "value": 7}
    assert tags_of({"temp": 31}, source, hot, always) == {"src": "readings", "hot": "yes", "team": 7}
    assert tags_of({"temp": 20}, hot) is None


def test_sources_filter() -> None:
    rule = {"name": "k", "method": "constant", "value": 1, "sources": ["other"]}
    assert tags_of({}, rule, source="readings") is None
    assert tags_of({}, rule, source="other") == {"k": 1}


def test_failure_is_counted_and_the_event_keeps_other_tags() -> None:
    status = RuleStatus()
    bad = compile_tag_rule(TagRuleDefinition(name="obj", method="value", path="$.nested"), status)
    good = compile_tag_rule(TagRuleDefinition(name="k", method="constant", value=1))
    tag_set = TagSet([bad, good])
    assert tag_set.apply("s", {"nested": {"a": 1}}, dict, 5) == {"k": 1}
    assert status.failures == 1
    assert "an object" in (status.last_error or "")


def test_catastrophic_regex_is_linear_time() -> None:
    import time

    rule = {"name": "r", "method": "regex", "path": "$.s", "pattern": r"^(a+)+$"}
    started = time.perf_counter()
    assert tags_of({"s": "a" * 5000 + "b"}, rule) is None
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"name": "x", "method": "value"}, "path"),
        ({"name": "x", "method": "regex", "path": "$.a"}, "pattern"),
        ({"name": "x", "method": "regex", "path": "$.a", "pattern": "(unclosed"}, "pattern"),
        ({"name": "x", "method": "regex", "path": "$.a", "pattern": r"(a)\1"}, "pattern"),
        ({"name": "x", "method": "value", "path": "$.a[*]"}, "path"),
        ({"name": "x", "method": "value", "path": "$.a[?"}, "path"),
        ({"name": "x", "method": "constant"}, "value"),
        ({"name": "x", "method": "source", "path": "$.a"}, "path"),
        ({"name": "x", "method": "constant", "value": 1, "filter": "bad"}, "filter"),
    ],
)
def test_bad_rules_are_refused_with_the_field(rule: dict[str, Any], field: str) -> None:
    with pytest.raises(DefinitionInvalid) as caught:
        compile_tag_rule(TagRuleDefinition.model_validate(rule))
    assert caught.value.field == field
