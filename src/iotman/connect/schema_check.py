"""JSON Schema (2020-12) checks of event payloads with jsonschema-rs.

Remote ``$ref`` is never fetched: the retriever refuses every URI, so a schema can
only refer to itself. Errors carry a JSON pointer into the payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from iotman.errors import DefinitionInvalid, SchemaRejected

__all__ = ["SchemaCheck", "compile_schema", "schema_rejection"]

MAX_ERRORS = 20


def _refuse_remote(uri: str) -> Any:
    raise ValueError(f"remote $ref {uri!r} is not fetched; inline the definition under $defs")


def _pointer(path: list[str | int]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


@dataclass(frozen=True, slots=True)
class SchemaCheck:
    validator: Any

    def problems(self, values: list[Any]) -> list[dict[str, Any]]:
        """``[{"index", "errors"}]`` for each event of a request that fails the schema."""
        out: list[dict[str, Any]] = []
        for index, value in enumerate(values):
            errors = self.errors(value)
            if errors:
                out.append({"index": index, "errors": errors})
        return out

    def errors(self, value: Any) -> list[dict[str, str]]:
        """Empty when the value is valid; else up to MAX_ERRORS {pointer, message}."""
        if self.validator.is_valid(value):
            return []
        out = []
        for error in self.validator.iter_errors(value):
            out.append({"pointer": _pointer(list(error.instance_path)), "message": error.message})
            if len(out) >= MAX_ERRORS:
                break
        return out


def compile_schema(schema: Any, field: str = "schema") -> SchemaCheck:
    """Compile once, at definition time; a bad schema is a 422 naming the field."""
    if not isinstance(schema, (dict, bool)):
        raise DefinitionInvalid(
            "schema must be a JSON Schema object (or true/false)", field=field, code="invalid_schema"
        )
    if isinstance(schema, dict):
        declared = schema.get("$schema")
        if declared is not None and "2020-12" not in str(declared):
            raise DefinitionInvalid(
                f"schema declares $schema {declared!r}; iotman validates JSON Schema 2020-12",
                field=field,
                code="invalid_schema",
            )
    try:
        validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True, retriever=_refuse_remote)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid schema"
        raise DefinitionInvalid(
            f"schema is not a valid JSON Schema: {first_line}", field=field, code="invalid_schema"
        ) from None
    return SchemaCheck(validator)


def schema_rejection(problems: list[dict[str, Any]], batch: bool) -> SchemaRejected:
    """The 422 for ``reject`` mode: the first error in the message, every error in ``errors``."""
    first_event = problems[0]
    first: dict[str, str] = first_event["errors"][0]
    where = f"event {first_event['index']}, " if batch else ""
    more = len(problems) > 1 or len(first_event["errors"]) > 1
    return SchemaRejected(
        f"{where}{first['pointer'] or '/'}: {first['message']}" + (" (and more; see errors)" if more else ""),
        details={"errors": problems},
    )
