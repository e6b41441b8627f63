"""Whether an event is selected by an output's ``select`` (SPEC §3.2), in Python: the same rule
the store applies in SQL (a tag whose value is null is absent)."""

from __future__ import annotations

from typing import Any

__all__ = ["selects"]


def selects(
    sources: tuple[str, ...] | None, tags: dict[str, Any] | None, source: str, event_tags: dict[str, Any] | None
) -> bool:
    if sources is not None and source not in sources:
        return False
    if tags:
        if not event_tags:
            return False
        for key, wanted in tags.items():
            value = event_tags.get(key)
            if value is None:
                return False
            if wanted != "*" and (isinstance(value, (dict, list)) or value != wanted):
                return False
    return True
