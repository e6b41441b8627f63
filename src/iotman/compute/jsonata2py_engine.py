"""The ``jsonata2py`` adapter: JSONata translated to Python source (pure Python).

Its limits are coarser than jlens's: a timeout (jsonata2py keeps it on the compiled
expression, so one compiled copy is kept per timeout asked for) and its own recursion
budget; steps and result sizes are not capped. It serves as the second engine the
compliance suite runs against, so a switch is a setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jsonata2py
import orjson

from iotman.compute.jsonata_engine import (
    UNDEFINED,
    EvalLimits,
    JsonataEvaluationError,
    JsonataLimitExceeded,
    JsonataSyntaxError,
)

__all__ = ["Jsonata2pyEngine"]

DEFAULT_LIMITS = EvalLimits()
_LIMIT_CODES = frozenset({"U1001", "D1012"})  # its recursion budget, its timeout


def _to_engine(value: Any) -> Any:
    return jsonata2py.MISSING if value is UNDEFINED else value


def _from_engine(value: Any) -> Any:
    if value is jsonata2py.MISSING:
        return UNDEFINED
    if isinstance(value, list | tuple):
        return [_from_engine(v) for v in value if v is not jsonata2py.MISSING]
    if isinstance(value, dict):
        return {k: _from_engine(v) for k, v in value.items() if v is not jsonata2py.MISSING}
    if isinstance(value, float) and value.is_integer() and not math.isinf(value) and abs(value) < 2**53:
        return int(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return ""  # a function (or another engine object): JSONata renders it as "" in JSON output


def _timeout_ms(limits: EvalLimits) -> int:
    return 0 if limits.timeout_s is None else max(1, int(limits.timeout_s * 1000))


class _Compiled:
    __slots__ = ("_by_timeout", "source")

    def __init__(self, text: str, limits: EvalLimits) -> None:
        self.source = text
        self._by_timeout: dict[int, Any] = {}
        self._expression(_timeout_ms(limits))

    def _expression(self, timeout_ms: int) -> Any:
        expression = self._by_timeout.get(timeout_ms)
        if expression is None:
            try:
                expression = jsonata2py.compile(self.source)
            except jsonata2py.JsonataError as exc:
                cause = exc.__cause__
                position = getattr(cause, "position", None)
                code = exc.error_code or "S0000"
                raise JsonataSyntaxError(code, exc.message, position if position and position >= 0 else None) from None
            if timeout_ms:
                expression.set_timeout(timeout_ms)
            if len(self._by_timeout) < 8:  # a few distinct timeouts at most (settings, tests)
                self._by_timeout[timeout_ms] = expression
        return expression

    def evaluate(
        self, value: Any, bindings: Mapping[str, Any] | None = None, limits: EvalLimits = DEFAULT_LIMITS
    ) -> Any:
        engine_bindings = None
        if bindings:
            engine_bindings = jsonata2py.JsonataBindings()
            for name, bound in bindings.items():
                if callable(bound):  # a host function ($require, $fail…): its exceptions pass through
                    engine_bindings.bind_function(name, bound)
                else:
                    engine_bindings.bind_value(name, bound)
        try:
            result = self._expression(_timeout_ms(limits)).evaluate(_to_engine(value), engine_bindings)
        except jsonata2py.JsonataError as exc:
            cause = exc.__cause__
            if isinstance(cause, Exception) and not isinstance(cause, (jsonata2py.JsonataError, RecursionError)):
                raise cause from None  # a host function's own exception passes through, as with jlens
            code = exc.error_code or "U0000"
            kind = JsonataLimitExceeded if code in _LIMIT_CODES else JsonataEvaluationError
            raise kind(code, exc.message) from None
        except RecursionError:
            raise JsonataLimitExceeded("U1001", "the evaluation recursed too deeply") from None
        return _from_engine(result)

    def evaluate_json(
        self, text: str | None, bindings: Mapping[str, Any] | None = None, limits: EvalLimits = DEFAULT_LIMITS
    ) -> str | None:
        value = UNDEFINED if text is None else orjson.loads(text)
        result = self.evaluate(value, bindings, limits)
        return None if result is UNDEFINED else orjson.dumps(result).decode()

    def evaluate_quick(self, value: Any, limits: EvalLimits = DEFAULT_LIMITS) -> Any:
        result = self.evaluate(value, None, limits)
        return None if result is UNDEFINED else result


class Jsonata2pyEngine:
    name = "jsonata2py"

    def __init__(self, limits: EvalLimits = DEFAULT_LIMITS) -> None:
        self._limits = limits

    def compile(self, text: str) -> _Compiled:
        return _Compiled(text, self._limits)
