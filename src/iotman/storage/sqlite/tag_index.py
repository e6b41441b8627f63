"""Tag indexes: partial expression indexes over the events' ``tags`` JSON, one pair per key.

Only events that carry the tag are in its indexes, so a rare tag's index is small
and a selection by it reads only matching rows. ``…_v`` serves ``{key: value}``
(ordered by value, then position); ``…_p`` serves ``{key: "*"}`` (ordered by position).
Indexes are created when an output selects the key, so tags nobody selects cost
nothing at ingest.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["index_names", "tag_expression", "tag_index_ddl", "tag_json_path"]

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


def tag_index_ddl(key: str) -> list[str]:
    expression = tag_expression(key)
    by_value, by_presence = index_names(key)
    return [
        f"CREATE INDEX IF NOT EXISTS {by_value} ON events ({expression}, pos) WHERE {expression} IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS {by_presence} ON events (pos) WHERE {expression} IS NOT NULL",
    ]
