"""The JSONata engine interface: ``compile`` once, ``evaluate`` with bindings and limits.

Two adapters implement it (DESIGN.md "Expression engines"): ``jlens`` (a Rust engine,
the default) and ``jsonata2py`` (pure Python, translated to Python source). The
setting ``jsonata_engine`` picks one; the official jsonata-js suite runs against both.

Values are plain JSON values (``dict``, ``list``, ``str``, ``int``, ``float``,
``bool``, ``None``); JSONata's *undefined* is ``UNDEFINED``, distinct from ``null``.
``evaluate_json`` takes and returns JSON text (``None``: undefined), which lets an
engine skip the parts of the input an expression does not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "UNDEFINED",
    "CompiledJsonata",
    "EvalLimits",
    "JsonataEngine",
    "JsonataEvaluationError",
    "JsonataFailure",
    "JsonataLimitExceeded",
    "JsonataSyntaxError",
]


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()
"""JSONata's undefined (no value), as opposed to ``None`` (JSON ``null``)."""


@dataclass(frozen=True, slots=True)
class EvalLimits:
    """Caps on one evaluation; ``None`` leaves a cap off."""

    timeout_s: float | None = 1.0
    max_steps: int | None = 1_000_000
    max_depth: int | None = 200
    max_result_bytes: int | None = 1_048_576


NO_LIMITS = EvalLimits(None, None, None, None)


class JsonataFailure(Exception):
    """A JSONata error: ``code`` is the JSONata code (``S0201``, ``T2001``, ``D3137``…)."""

    def __init__(self, code: str, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.position = position


class JsonataSyntaxError(JsonataFailure):
    """The expression does not compile; ``position`` is a code-point offset into it."""


class JsonataEvaluationError(JsonataFailure):
    """The expression failed on this input."""


class JsonataLimitExceeded(JsonataEvaluationError):
    """The evaluation hit a limit (time, steps, depth, size) and was stopped."""


class CompiledJsonata(Protocol):
    """A compiled expression, safe to share between threads."""

    @property
    def source(self) -> str: ...

    def evaluate(self, value: Any, bindings: Mapping[str, Any] | None = None, limits: EvalLimits = ...) -> Any:
        """The result for ``value`` (``UNDEFINED`` for no input), or ``UNDEFINED``."""
        ...

    def evaluate_json(
        self, text: str | None, bindings: Mapping[str, Any] | None = None, limits: EvalLimits = ...
    ) -> str | None:
        """The result as JSON text for the JSON text ``text`` (``None``: no input), ``None`` if undefined."""
        ...

    def evaluate_quick(self, value: Any, limits: EvalLimits = ...) -> Any:
        """The result for ``value`` with ``None`` for both null and undefined, without handing the
        GIL to other threads: for short evaluations on a thread that must not wait to get it back
        (the writer). Ask ``evaluate_json`` when ``None`` must be told apart."""
        ...


class JsonataEngine(Protocol):
    name: str

    def compile(self, text: str) -> CompiledJsonata:
        """Raises ``JsonataSyntaxError``."""
        ...
