"""Regular expressions that cannot backtrack catastrophically: RE2 (linear time).

Used for tag rules' ``regex`` method and for RFC 9535's ``match()``/``search()``
functions, replacing the backtracking engine python-jsonpath would use, so a pattern
like ``(a+)+$`` costs microseconds, not minutes, whatever the input.
"""

from __future__ import annotations

from typing import Any

import re2
from iregexp_check import check as is_iregexp
from jsonpath.function_extensions.match import Match
from jsonpath.function_extensions.search import Search

__all__ = ["BoundedMatch", "BoundedSearch", "RegexError", "compile_regex", "iregexp_to_re2"]

RegexError = re2.error
_CACHE_LIMIT = 1000

# pyre2 would silently fall back to Python's backtracking `re` for patterns RE2 cannot
# run (backreferences, lookarounds); refuse them instead.
re2.set_fallback_notification(re2.FALLBACK_EXCEPTION)


def compile_regex(pattern: str) -> Any:
    """Compile a pattern with RE2; raises ``RegexError`` with RE2's message."""
    try:
        compiled = re2.compile(pattern)
    except (re2.BackreferencesException, re2.CharClassProblemException) as exc:
        raise RegexError(f"{exc} (RE2 has no backreferences or lookarounds)") from None
    if isinstance(compiled, re2.FallbackPattern):  # pragma: no cover - guarded by the notification above
        raise RegexError("the pattern needs features RE2 does not have (backreferences, lookarounds)")
    return compiled


def iregexp_to_re2(pattern: str) -> str:
    """RFC 9485 I-Regexp to RE2: ``.`` outside a class must not match CR or LF."""
    out: list[str] = []
    escaped = in_class = False
    for ch in pattern:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "]":
            in_class = False
            out.append(ch)
        elif ch == "." and not in_class:
            out.append("[^\\n\\r]")
        else:
            out.append(ch)
    return "".join(out)


class _Re2Patterns:
    """An unbounded-growth-safe cache of compiled I-Regexps (None for invalid ones)."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def get(self, pattern: str) -> Any:
        try:
            return self._cache[pattern]
        except KeyError:
            pass
        compiled = None
        if is_iregexp(pattern):
            try:
                compiled = compile_regex(iregexp_to_re2(pattern))
            except RegexError:
                compiled = None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[pattern] = compiled
        return compiled


_PATTERNS = _Re2Patterns()


class BoundedMatch(Match):
    """RFC 9535 ``match()``: the whole string matches the I-Regexp."""

    def __call__(self, value: object, pattern: object) -> bool:
        if not isinstance(value, str) or not isinstance(pattern, str):
            return False
        compiled = _PATTERNS.get(pattern)
        return compiled is not None and compiled.fullmatch(value) is not None


class BoundedSearch(Search):
    """RFC 9535 ``search()``: some substring matches the I-Regexp."""

    def __call__(self, value: object, pattern: object) -> bool:
        if not isinstance(value, str) or not isinstance(pattern, str):
            return False
        compiled = _PATTERNS.get(pattern)
        return compiled is not None and compiled.search(value) is not None
