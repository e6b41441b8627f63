"""JSON in and out: orjson on the hot path, the standard library where orjson would round.

orjson reads integers beyond 64 bits as floats, silently losing digits. A body with
a run of 19+ digits is therefore parsed by the standard library, which keeps them
exact; ``dump_json`` likewise falls back when orjson refuses a value.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from iotman.errors import InvalidJson

__all__ = ["check_finite", "dump_json", "has_long_numbers", "load_json", "parse_json"]

_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_ZEROS = b"0" * 19
MAX_DEPTH = 254
"""Deepest nesting stored: orjson writes at most 254 levels (and reads 1024)."""


def has_long_numbers(data: bytes) -> bool:
    """Whether a run of 19+ digits may hold an integer orjson would round."""
    # translate + find run in C at memory speed; a regex here cost more than parsing
    return data.translate(_DIGITS_AS_ZERO).find(_NINETEEN_ZEROS) != -1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(data: bytes | str, *, where: str = "body", line: int | None = None) -> Any:
    """Parse one JSON value; raise ``InvalidJson`` naming the position of the error."""
    raw = data.encode() if isinstance(data, str) else data
    if not has_long_numbers(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            # orjson also rejects what the standard library would accept only with
            # surrogate escapes; report its position either way.
            if "surrogate" not in str(exc):
                raise _json_error(exc.msg, exc.pos, exc.lineno, exc.colno, where, line) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _json_error("invalid UTF-8", exc.start, 0, 0, where, line) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _json_error(exc.msg, exc.pos, exc.lineno, exc.colno, where, line) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"{where} is not valid JSON: {exc}", field=where) from None


def _json_error(msg: str, pos: int, lineno: int, colno: int, where: str, line: int | None) -> InvalidJson:
    place = f"line {line}, " if line is not None else ""
    if lineno:
        place += f"line {lineno} column {colno} (byte {pos})" if line is None else f"column {colno} (byte {pos})"
    else:
        place += f"byte {pos}"
    details: dict[str, Any] = {}
    if line is not None:
        details["line"] = line
    return InvalidJson(f"{where} is not valid JSON at {place}: {msg}", field=where, position=pos, details=details)


def dump_json(value: Any) -> str:
    """Compact JSON text; exact for big integers; refuses NaN and infinities."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError as exc:
        if "ecursion" in str(exc):
            raise InvalidJson(f"the value is nested more than {MAX_DEPTH} levels deep", code="too_deep") from None
        return _dump_std(value)  # integers beyond 64 bits
    except TypeError:
        return _dump_std(value)


def _dump_std(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except RecursionError:
        raise InvalidJson(f"the value is nested more than {MAX_DEPTH} levels deep", code="too_deep") from None
    except (TypeError, ValueError) as exc:
        raise InvalidJson(f"value cannot be stored as JSON: {exc}") from None


def load_json(text: str | bytes) -> Any:
    """Read back stored JSON text (exact for big integers)."""
    raw = text.encode() if isinstance(text, str) else text
    if not has_long_numbers(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def check_finite(value: Any) -> bool:
    """False when a float NaN or infinity hides in the value (msgpack can carry them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(check_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(check_finite(v) for v in value)
    return True
