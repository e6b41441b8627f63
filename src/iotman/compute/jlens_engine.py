"""The ``jlens`` adapter (the default JSONata engine): a Rust engine, GIL released while it runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jlens

from iotman.compute import json_values
from iotman.compute.jsonata_engine import (
    UNDEFINED,
    EvalLimits,
    JsonataEvaluationError,
    JsonataFailure,
    JsonataLimitExceeded,
    JsonataSyntaxError,
)

__all__ = ["JlensEngine"]

DEFAULT_LIMITS = EvalLimits()
# jlens's codes for a stopped evaluation: sizes, steps, depth (stack), time
_LIMIT_CODES = frozenset({"U1001", "U1006", "D1011", "D1012"})


def _failure(exc: jlens.JlensError) -> JsonataFailure:
    code = getattr(exc, "code", None) or "U0000"
    message = str(exc)
    kind = JsonataLimitExceeded if code in _LIMIT_CODES else JsonataEvaluationError
    return kind(code, message, getattr(exc, "position", None))


def _options(limits: EvalLimits) -> dict[str, Any]:
    return {
        "timeout": limits.timeout_s,
        "max_steps": limits.max_steps,
        "max_depth": limits.max_depth,
        "max_result_size": limits.max_result_bytes,
    }


class _Compiled:
    __slots__ = ("_expression", "source")

    def __init__(self, text: str) -> None:
        try:
            self._expression = jlens.Expression(text)
        except jlens.JlensError as exc:
            raise JsonataSyntaxError(exc.code, str(exc), getattr(exc, "position", None)) from None
        except UnicodeEncodeError as exc:  # a lone surrogate: not Unicode text jlens can take
            message = f"the expression holds a character that is not valid Unicode at position {exc.start}"
            raise JsonataSyntaxError("S0101", message, exc.start) from None
        self.source = text

    def evaluate(
        self, value: Any, bindings: Mapping[str, Any] | None = None, limits: EvalLimits = DEFAULT_LIMITS
    ) -> Any:
        # evaluate() answers None for both undefined and null: go through JSON text to tell them apart
        text = None if value is UNDEFINED else json_values.dumps(value)
        result = self.evaluate_json(text, bindings, limits)
        return UNDEFINED if result is None else json_values.loads(result)

    def evaluate_json(
        self, text: str | None, bindings: Mapping[str, Any] | None = None, limits: EvalLimits = DEFAULT_LIMITS
    ) -> str | None:
        if text is not None and not json_values.encodable(text):
            raise JsonataEvaluationError("D3140", "the input holds a character that is not valid Unicode")
        try:
            result: str | None = self._expression.evaluate_json(
                text, dict(bindings) if bindings else None, **_options(limits)
            )
        except jlens.JlensError as exc:
            raise _failure(exc) from None
        except (ValueError, TypeError) as exc:  # input or result jlens cannot convert (a lone surrogate…)
            raise JsonataEvaluationError("D3140", f"the value cannot be evaluated: {exc}") from None
        return result

    def reads(self) -> Any:
        """What the expression reads of its input: True (all of it) or ``{field: ...}`` (jlens's
        ``reads()``; an input cut down to it gives the same result). ``{}``: none of it."""
        return self._expression.reads().get("input", {})

    def evaluate_quick(self, value: Any, limits: EvalLimits = DEFAULT_LIMITS) -> Any:
        # evaluate() reads the Python value as it goes, holding the GIL: no hand-off per call
        try:
            return self._expression.evaluate(value, None, **_options(limits))
        except jlens.JlensError as exc:
            raise _failure(exc) from None
        except (ValueError, TypeError) as exc:
            raise JsonataEvaluationError("D3140", f"the value cannot be evaluated: {exc}") from None


class JlensEngine:
    name = "jlens"

    def compile(self, text: str) -> _Compiled:
        return _Compiled(text)
