"""JSON text to values and back for the compute layer: orjson, and the standard library where
orjson refuses (integers past 64 bits, lone surrogates)."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "encodable", "loads"]


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer past 64 bits or a lone surrogate
        return json.dumps(value, separators=(",", ":"))


def loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # the same, as JSON allows them
        return json.loads(text)


def encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogate): what UTF-8 and the engines take."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
