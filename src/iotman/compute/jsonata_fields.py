"""JSONata in definitions: pick the engine from settings, compile a field, explain errors.

A syntax error is a 422 ``invalid_jsonata`` with the position and a caret excerpt.
JSONPath written where JSONata is expected (``$.payload.x``, ``$..x``, ``@``) is
refused with a message saying the field takes JSONata, and what it would look like.
"""

from __future__ import annotations

import re

from iotman.compute.jlens_engine import JlensEngine
from iotman.compute.jsonata2py_engine import Jsonata2pyEngine
from iotman.compute.jsonata_engine import CompiledJsonata, EvalLimits, JsonataEngine, JsonataSyntaxError
from iotman.errors import ConfigurationError, DefinitionInvalid

__all__ = ["caret_excerpt", "compile_jsonata_field", "engine_named", "limits_from"]

_JSONPATH = re.compile(r"^\s*\$(\.|\[)|\$\.\.|@(?!\s*\$)")  # JSONata's @ always binds a $variable


def engine_named(name: str, limits: EvalLimits) -> JsonataEngine:
    if name == "jlens":
        return JlensEngine()
    if name == "jsonata2py":
        return Jsonata2pyEngine(limits)
    raise ConfigurationError(f"unknown JSONata engine {name!r}: use jlens or jsonata2py", field="jsonata_engine")


def limits_from(timeout_ms: int, max_steps: int, max_depth: int, max_result_bytes: int) -> EvalLimits:
    return EvalLimits(
        timeout_s=timeout_ms / 1000 if timeout_ms > 0 else None,
        max_steps=max_steps or None,
        max_depth=max_depth or None,
        max_result_bytes=max_result_bytes or None,
    )


def caret_excerpt(text: str, position: int) -> str:
    """The line of ``text`` holding ``position`` and a caret under it."""
    position = max(0, min(position, len(text)))
    line_start = text.rfind("\n", 0, position) + 1
    line_end = text.find("\n", position)
    line = text[line_start : line_end if line_end != -1 else len(text)]
    return f"{line}\n{' ' * (position - line_start)}^"


_LITERALS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|/\*.*?\*/|`[^`]*`', re.S)


def _code_only(text: str) -> str:
    """``text`` with string literals, comments and quoted names blanked (same length):
    an ``@`` in ``"ops@example.com"`` is not JSONPath."""
    return _LITERALS.sub(lambda m: " " * len(m.group()), text)


def _jsonpath_hint(text: str) -> str | None:
    if not _JSONPATH.search(_code_only(text)):  # $.x, $[0], $..x, @.x, ?(@ > 1)
        return None
    stripped = text.strip()
    if stripped.startswith("$."):
        return f"this looks like JSONPath; this field takes JSONata, e.g. {stripped[2:]!r}"
    return "this looks like JSONPath; this field takes JSONata (paths like payload.device_id, no $. or @)"


def compile_jsonata_field(engine: JsonataEngine, text: object, field_name: str) -> CompiledJsonata:
    """Compile a definition's JSONata field, or raise a 422 that says what and where."""
    if not isinstance(text, str) or not text.strip():
        raise DefinitionInvalid(
            f"{field_name}: a JSONata expression is required", code="invalid_jsonata", field=field_name
        )
    hint = _jsonpath_hint(text)
    if hint is not None:
        code = _code_only(text)
        position = code.find("$") if code.lstrip().startswith("$") else max(code.find("@"), 0)
        excerpt = caret_excerpt(text, position)
        raise DefinitionInvalid(
            f"{field_name}: {hint}\n{excerpt}",
            code="wrong_expression_language",
            field=field_name,
            position=position,
            details={"excerpt": excerpt, "language": "jsonata"},
        )
    try:
        return engine.compile(text)
    except JsonataSyntaxError as exc:
        position = exc.position if exc.position is not None else len(text)
        excerpt = caret_excerpt(text, position)
        raise DefinitionInvalid(
            f"{field_name}: {exc.message} ({exc.code}) at position {position}\n{excerpt}",
            code="invalid_jsonata",
            field=field_name,
            position=position,
            details={"excerpt": excerpt, "jsonata_code": exc.code},
        ) from None
