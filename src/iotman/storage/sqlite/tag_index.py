"""Tag indexes: partial expression indexes over the events' ``tags`` JSON, up to two per key.

Only events that carry the tag are in its indexes, so a rare tag's index is small
and a selection by it reads only matching rows. ``…_v`` serves ``{key: value}``
(ordered by value, then position); ``…_p`` serves ``{key: "*"}`` (ordered by position).
An index is created when an output's selection is driven by it (``driving_index``),
so tags nobody selects, and selection kinds nobody uses, cost nothing at ingest:
each index costs about 1.7 µs an event to keep (SQLite parses the tags JSON for it).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

__all__ = ["driving_index", "index_name", "index_names", "tag_expression", "tag_index_ddl", "tag_json_path"]

_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def tag_expression(key: str) -> str:
    """The SQL expression of a tag's value; identical text in indexes and queries."""
    if not _KEY.fullmatch(key):  # keys are validated by the definitions; this guards the SQL text
        raise ValueError(f"not a tag key: {key!r}")
    return "json_extract(tags, '$.\"" + key + "\"')"


def tag_json_path(key: str) -> str:
    """The JSON path of a tag in the ``tags`` object (SQLite and DuckDB read it alike)."""
    tag_expression(key)  # validates the key
    return '$."' + key + '"'


def index_names(key: str) -> tuple[str, str]:
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]
    return f"events_tag_{digest}_v", f"events_tag_{digest}_p"


def index_name(key: str, presence: bool) -> str:
    """The index serving ``{key: "*"}`` (``presence``) or ``{key: value}``."""
    return index_names(key)[1 if presence else 0]


def driving_index(tags: dict[str, Any]) -> tuple[str, bool]:
    """(key, presence) of the index that drives a selection by ``tags`` (not empty).

    A value match narrows more than "has tag", so it drives when there is one; ties
    go to the first key in sorted order, so the choice does not depend on the order
    the selection was written in.
    """
    key = min(tags, key=lambda k: (tags[k] == "*", k))
    return key, tags[key] == "*"


def tag_index_ddl(key: str, presence: bool) -> str:
    expression = tag_expression(key)
    name = index_name(key, presence)
    if presence:
        return f"CREATE INDEX IF NOT EXISTS {name} ON events (pos) WHERE {expression} IS NOT NULL"
    return f"CREATE INDEX IF NOT EXISTS {name} ON events ({expression}, pos) WHERE {expression} IS NOT NULL"
