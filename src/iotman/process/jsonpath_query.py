"""JSONPath (RFC 9535, strict) queries, compiled once when a definition is saved.

The engine is python-jsonpath in strict mode (703/703 of the official compliance
suite, which ``tests/compliance`` runs against this module). Singular queries (only
name and index steps, read from the engine's own parse) are evaluated by plain
dict/list lookups, 10-50x faster; everything else goes through the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from jsonpath import JSONPathEnvironment, JSONPathError
from jsonpath.path import JSONPath
from jsonpath.segments import JSONPathChildSegment
from jsonpath.selectors import IndexSelector, NameSelector

from iotman.errors import DefinitionInvalid
from iotman.process.bounded_regex import BoundedMatch, BoundedSearch

__all__ = ["MISSING", "Query", "caret_excerpt", "compile_query", "walk"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What a singular query gives when it selects nothing (``None`` is JSON null)."""

_ENV = JSONPathEnvironment(strict=True)
_ENV.function_extensions["match"] = BoundedMatch()
_ENV.function_extensions["search"] = BoundedSearch()

Step = str | int


def walk(data: Any, steps: tuple[Step, ...]) -> Any:
    """Follow name/index steps with plain lookups; MISSING when a step selects nothing."""
    for step in steps:
        if type(step) is str:
            if type(data) is not dict:
                return MISSING
            data = data.get(step, MISSING)
            if data is MISSING:
                return MISSING
        else:
            if type(data) is not list:
                return MISSING
            assert isinstance(step, int)
            index = step if step >= 0 else len(data) + step
            if not 0 <= index < len(data):
                return MISSING
            data = data[index]
    return data


def _singular_steps(path: JSONPath) -> tuple[Step, ...] | None:
    if not path.singular_query():
        return None
    steps: list[Step] = []
    for segment in path.segments:
        if not isinstance(segment, JSONPathChildSegment) or len(segment.selectors) != 1:
            return None
        selector = segment.selectors[0]
        if isinstance(selector, NameSelector):
            steps.append(selector.name)
        elif isinstance(selector, IndexSelector):
            steps.append(selector.index)
        else:
            return None
    return tuple(steps)


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    path: JSONPath = field(repr=False)
    steps: tuple[Step, ...] | None

    @property
    def singular(self) -> bool:
        return self.steps is not None

    def find(self, data: Any) -> list[Any]:
        """The values of every node the query selects, in document order."""
        if self.steps is not None:
            value = walk(data, self.steps)
            return [] if value is MISSING else [value]
        return [match.obj for match in self.path.finditer(data)]

    def engine_find(self, data: Any) -> list[Any]:
        """The same through the engine only (the compliance tests compare both paths)."""
        return [match.obj for match in self.path.finditer(data)]

    def first(self, data: Any) -> Any:
        """The value a singular query selects, or MISSING."""
        if self.steps is not None:
            return walk(data, self.steps)
        nodes = self.find(data)
        return nodes[0] if nodes else MISSING

    def starts_with_name(self) -> str | None:
        """The name of the first step, when the query starts with one name selector."""
        segments = self.path.segments
        if segments and isinstance(segments[0], JSONPathChildSegment) and len(segments[0].selectors) == 1:
            selector = segments[0].selectors[0]
            if isinstance(selector, NameSelector):
                return selector.name
        return None


def caret_excerpt(text: str, position: int) -> str:
    """Two lines: the expression and a caret under ``position``."""
    line_start = text.rfind("\n", 0, position) + 1
    line_end = text.find("\n", position)
    line = text[line_start : line_end if line_end != -1 else len(text)]
    return f"{line}\n{' ' * (position - line_start)}^"


def compile_query(text: str, field_name: str, *, offset: int = 0, whole: str | None = None) -> Query:
    """Compile ``text``; a bad query is a 422 naming the field, the position and a caret.

    ``offset``/``whole`` place the error inside a larger expression (constructors).
    """
    if not isinstance(text, str) or not text.strip():
        raise DefinitionInvalid("a JSONPath query is required", code="invalid_jsonpath", field=field_name)
    if not text.lstrip().startswith("$"):
        hint = ""
        if _looks_like_jsonata(text):
            hint = " (this looks like JSONata: Process fields take JSONPath, e.g. $.value)"
        position = offset
        excerpt = caret_excerpt(whole or text, position)
        raise DefinitionInvalid(
            f"{field_name}: a JSONPath query starts with ${hint}\n{excerpt}",
            code="invalid_jsonpath",
            field=field_name,
            position=position,
            details={"excerpt": excerpt},
        )
    try:
        path = _ENV.compile(text)
    except JSONPathError as exc:
        token = getattr(exc, "token", None)
        local = getattr(token, "index", 0) if token is not None else 0
        if not 0 <= local <= len(text):
            local = len(text)  # "unexpected end": point just past the query
        message = str(exc.args[0]) if exc.args else str(exc)
        position = offset + local
        excerpt = caret_excerpt(whole or text, position)
        raise DefinitionInvalid(
            f"{field_name}: {message.splitlines()[0]} at position {position}\n{excerpt}",
            code="invalid_jsonpath",
            field=field_name,
            position=position,
            details={"excerpt": excerpt},
        ) from None
    if not isinstance(path, JSONPath):
        raise DefinitionInvalid(
            f"{field_name}: union queries (|, &) are not RFC 9535 JSONPath", code="invalid_jsonpath", field=field_name
        )
    return Query(text, path, _singular_steps(path))


def _looks_like_jsonata(text: str) -> bool:
    stripped = text.strip()
    return any(token in stripped for token in ("$sum(", "$count(", "&", " and ", " or ", "=>", ":=")) or (
        bool(stripped) and stripped[0].isalpha()
    )
