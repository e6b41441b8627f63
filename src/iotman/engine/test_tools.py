"""The test tools (SPEC §8): evaluate a query, constructor or tag rule on sample events.

Nothing is written; errors are the same 422s (with position and caret excerpt) that
saving the definition would give.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from iotman.core.clock import Clock, format_us
from iotman.core.tag_rule import TagRuleDefinition
from iotman.engine.admin_service import definition_error
from iotman.errors import DefinitionInvalid
from iotman.process.constructor import EventView, StrictMissing, compile_constructor
from iotman.process.jsonpath_query import compile_query
from iotman.process.tag_rules import RuleStatus, TagSet, compile_tag_rule

__all__ = ["TestTools"]


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in body:
        raise DefinitionInvalid(f"{name!r} is required", code="invalid_request", field=name)
    value = body[name]
    if not isinstance(value, kind):
        raise DefinitionInvalid(f"{name!r} has the wrong type", code="invalid_request", field=name)
    return value


def _samples(body: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The sample events: ``events`` (a list of envelopes) or one ``payload`` (+ optional envelope fields)."""
    if "events" in body:
        events = _field(body, "events", list)
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise DefinitionInvalid(f"events[{index}] must be an object", code="invalid_request", field="events")
        return events, True
    if "payload" not in body:
        raise DefinitionInvalid(
            "give a sample 'payload' or a list of 'events'", code="invalid_request", field="payload"
        )
    return [body], False


class TestTools:
    __test__ = False  # not a pytest class

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def _view(self, event: dict[str, Any], index: int) -> EventView:
        metadata = event.get("metadata") or {}
        tags = event.get("tags") or {}
        if not isinstance(metadata, dict) or not isinstance(tags, dict):
            raise DefinitionInvalid("metadata and tags must be objects", code="invalid_request", field="metadata")
        return EventView(
            event.get("payload"),
            seq=int(event.get("seq", index + 1)),
            id=str(event.get("id", "")),
            source=str(event.get("source", "test")),
            received_at=str(event.get("received_at", format_us(self._clock.now_us()))),
            metadata=metadata,
            tags=tags,
        )

    def jsonpath(self, body: dict[str, Any]) -> dict[str, Any]:
        query = compile_query(_field(body, "query", str), "query")
        document = body.get("document", body.get("payload"))
        return {"singular": query.singular, "result": query.find(document)}

    def constructor(self, body: dict[str, Any]) -> dict[str, Any]:
        constructor = compile_constructor(_field(body, "constructor", str))
        events, many = _samples(body)
        results: list[Any] = []
        for index, event in enumerate(events):
            try:
                results.append({"result": constructor.render(self._view(event, index))})
            except StrictMissing as exc:
                results.append({"error": {"code": "strict_missing", "message": str(exc)}})
        fields = [{"name": f.name, "aggregatable": f.payload_steps is not None} for f in constructor.fields]
        return {"results": results, "fields": fields} if many else {**results[0], "fields": fields}

    def tag_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        raw = _field(body, "rule", dict)
        try:
            rule = TagRuleDefinition.model_validate({k: v for k, v in raw.items() if k != "status"})
        except ValidationError as exc:
            raise definition_error(exc, "tag rule") from None
        status = RuleStatus()
        tag_set = TagSet([compile_tag_rule(rule, status)])
        events, many = _samples(body)
        results = []
        for index, event in enumerate(events):
            view = self._view(event, index)
            source = view.source
            envelope = {
                "payload": view.payload,
                "metadata": {**view.metadata(), "received_at": view.received_at},
                "source": source,
                "received_at": view.received_at,
            }
            before = status.failures

            def get_envelope(e: dict[str, Any] = envelope) -> dict[str, Any]:
                return e

            tags = tag_set.apply(source, view.payload, get_envelope, 0) or {}
            outcome: dict[str, Any] = {"tags": tags, "applies": tag_set.program(source) is not None}
            if status.failures > before:
                outcome["error"] = status.last_error
            results.append(outcome)
        return {"results": results} if many else results[0]
