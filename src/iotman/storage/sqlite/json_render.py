"""Render specs to SQLite JSON SQL: outputs rendered by SQLite itself, in C.

``->`` returns a value's JSON text exactly as stored (numbers keep every digit,
integers beyond 64 bits included), and ``json_object``/``json_array`` embed such
values as JSON, so the text equals what the Python renderer would produce. Every
name and path goes in as a bound parameter, never as SQL text.
"""

from __future__ import annotations

import re
from typing import Any

from iotman.storage.ports import RenderSpec

__all__ = ["json_path", "render_sql"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COLUMNS = {
    "id": "id",
    "source": "source",
    "received_at": (
        "(strftime('%Y-%m-%dT%H:%M:%S', received_at_us / 1000000, 'unixepoch')"
        " || printf('.%06dZ', received_at_us % 1000000))"
    ),
}


def json_path(steps: tuple[str | int, ...]) -> str:
    """``$.a."b c"[0][#-1]``: identifiers bare (SQLite parses them about twice as fast),
    other names quoted, negative indexes counted from the end."""
    out = ["$"]
    for step in steps:
        if isinstance(step, int):
            out.append(f"[{step}]" if step >= 0 else f"[#{step}]")
        elif _IDENTIFIER.fullmatch(step):
            out.append("." + step)
        elif '"' in step or "\\" in step:
            raise ValueError(f"a JSON path step cannot hold quotes or backslashes: {step!r}")
        else:
            out.append('."' + step + '"')
    return "".join(out)


def _param(params: list[Any], value: Any) -> str:
    params.append(value)
    return "?"


def render_sql(spec: RenderSpec, params: list[Any], base: int) -> str:
    """The SQL expression of ``spec``; its parameters are appended to ``params`` in order.

    ``base`` is the workspace's first position (``seq = pos - base``).
    """
    kind = spec[0]
    if kind == "object":
        parts = []
        for key, child in spec[1]:
            parts.append(_param(params, key))
            parts.append(render_sql(child, params, base))
        return f"json_object({', '.join(parts)})"
    if kind == "array":
        return f"json_array({', '.join(render_sql(child, params, base) for child in spec[1])})"
    if kind == "literal":
        return f"json({_param(params, spec[1])})"
    if kind == "column":
        if spec[1] == "seq":
            return f"(pos - {_param(params, base)})"
        return _COLUMNS[spec[1]]
    if kind == "payload":
        return f"(payload -> {_param(params, json_path(spec[1]))})"
    if kind == "tags":
        return f"(coalesce(tags, '{{}}') -> {_param(params, json_path(spec[1]))})"
    if kind == "metadata":
        return f"(metadata -> {_param(params, json_path((spec[1], *spec[2])))})"
    raise ValueError(f"unknown render spec {kind!r}")
