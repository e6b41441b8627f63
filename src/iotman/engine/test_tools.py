"""The test tools (SPEC §8): evaluate a query, constructor, JSONata expression or tag rule on samples.

Nothing is written; errors are the same 422s (with position and caret excerpt) that
saving the definition would give.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from iotman.compute.jsonata_engine import UNDEFINED, EvalLimits, JsonataEngine, JsonataFailure, JsonataLimitExceeded
from iotman.compute.jsonata_fields import compile_jsonata_field
from iotman.compute.view_fold import CompiledView, ViewStatus, compile_batch_reducer
from iotman.connect.json_codec import dump_json
from iotman.core.clock import Clock, format_us
from iotman.core.tag_rule import TagRuleDefinition
from iotman.core.view import BUILT_IN_REDUCERS, ViewDefinition
from iotman.engine.admin_service import definition_error
from iotman.errors import DefinitionInvalid
from iotman.process.constructor import EventView, StrictMissing, compile_constructor
from iotman.process.jsonpath_query import compile_query
from iotman.process.tag_rules import RuleStatus, TagSet, compile_tag_rule
from iotman.storage.ports import FoldBatch, FoldGroup, StoredEvent

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

    def __init__(self, clock: Clock, jsonata: JsonataEngine, limits: EvalLimits) -> None:
        self._clock = clock
        self._jsonata = jsonata
        self._limits = limits

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

    def jsonata(self, body: dict[str, Any]) -> dict[str, Any]:
        """``expression`` over ``input`` (or ``payload``; neither: no input) with ``bindings``.

        ``{"result": value}``, or ``{"undefined": true}`` when the expression yields no
        value; an evaluation failure is ``{"error": {...}}`` (the expression itself is
        fine; a syntax error is a 422 like saving a definition).
        """
        compiled = compile_jsonata_field(self._jsonata, _field(body, "expression", str), "expression")
        bindings = body.get("bindings") or {}
        if not isinstance(bindings, dict) or not all(isinstance(k, str) and k for k in bindings):
            raise DefinitionInvalid(
                "'bindings' must be an object of names (without $) to values", code="invalid_request", field="bindings"
            )
        value = body["input"] if "input" in body else body.get("payload", UNDEFINED)
        try:
            result = compiled.evaluate(value, bindings, self._limits)
        except JsonataFailure as exc:
            error: dict[str, Any] = {
                "code": "jsonata_limit_exceeded" if isinstance(exc, JsonataLimitExceeded) else "jsonata_failed",
                "jsonata_code": exc.code,
                "message": exc.message,
            }
            if exc.position is not None:
                error["position"] = exc.position
            return {"error": error, "engine": self._jsonata.name}
        if result is UNDEFINED:
            return {"undefined": True, "engine": self._jsonata.name}
        return {"result": result, "engine": self._jsonata.name}

    def view(self, body: dict[str, Any]) -> dict[str, Any]:
        """``view`` (a definition) folded over ``events``: the rows it would hold, in key order."""
        raw = _field(body, "view", dict)
        try:
            definition = ViewDefinition.model_validate({"name": "test", **raw})
        except ValidationError as exc:
            raise definition_error(exc, "view") from None
        compiled = CompiledView(
            definition,
            compile_jsonata_field(self._jsonata, definition.key, "view.key"),
            None
            if definition.reducer in BUILT_IN_REDUCERS
            else compile_jsonata_field(self._jsonata, definition.reducer, "view.reducer"),
            None if definition.init is None else compile_jsonata_field(self._jsonata, definition.init, "view.init"),
            self._limits,
            ViewStatus(),
            None
            if definition.reducer in BUILT_IN_REDUCERS
            else compile_batch_reducer(self._jsonata, definition.reducer),
        )
        events, _ = _samples(body)
        now_us = self._clock.now_us()
        stored: list[StoredEvent] = []
        for index, sample in enumerate(events):
            view = self._view(sample, index)  # checks the sample's fields
            tags = view.tags()
            event = StoredEvent(
                view.seq,
                view.id,
                view.source,
                now_us,
                dump_json(view.payload),
                dump_json(sample.get("metadata") or {}),
                dump_json(tags) if tags else None,
            )
            if compiled.applies_to(event.source):
                stored.append(event)
        batch = FoldBatch(stored)
        by_key: dict[str, list[int]] = {}
        for position, key in enumerate(compiled.keys(batch)):
            if key is not None:
                by_key.setdefault(key, []).append(position)
        groups = [FoldGroup(key, None, by_key[key]) for key in sorted(by_key)]
        rows = [
            {"key": group.key, "value": orjson.loads(outcome.value), "seq": outcome.seq}
            for group, outcome in zip(groups, compiled.fold(batch, groups) if groups else [], strict=True)
            if outcome.value is not None
        ]
        return {"rows": rows, "status": compiled.status.to_json(), "engine": self._jsonata.name}

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
