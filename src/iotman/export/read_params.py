"""The query of ``GET /data/{ws}/{path}`` and its ``next_page`` link (SPEC §5.1).

Newest first by default; ``next_page`` carries ``before_seq`` so walking pages is
stable while new events arrive. ``order=asc`` walks forward from ``after_seq``.
``from`` is inclusive, ``to`` exclusive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from iotman.core.time_bounds import parse_time_us
from iotman.errors import InvalidQuery

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "ReadParams", "int_param", "parse_read_params", "refuse_unknown"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
_KNOWN = frozenset({"from", "to", "limit", "order", "after_seq", "before_seq"})


@dataclass(frozen=True, slots=True)
class ReadParams:
    from_us: int | None = None
    to_us: int | None = None
    limit: int | None = DEFAULT_LIMIT
    descending: bool = True
    after_seq: int | None = None
    before_seq: int | None = None
    raw_from: str | None = None
    raw_to: str | None = None

    def next_page_query(self, last_seq: int) -> str:
        """The query string of the page after one ending at ``last_seq``."""
        query: dict[str, str] = {}
        if self.raw_from is not None:
            query["from"] = self.raw_from
        if self.raw_to is not None:
            query["to"] = self.raw_to
        if self.limit is not None:
            query["limit"] = str(self.limit)
        if self.descending:
            query["before_seq"] = str(last_seq)
            if self.after_seq is not None:
                query["after_seq"] = str(self.after_seq)
        else:
            query["order"] = "asc"
            query["after_seq"] = str(last_seq)
            if self.before_seq is not None:
                query["before_seq"] = str(self.before_seq)
        return urlencode(query)


def refuse_unknown(params: Mapping[str, str], known: frozenset[str], hint: str) -> None:
    """A 400 ``unknown_parameter`` naming the first parameter not in ``known``."""
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidQuery(
            f"unknown query parameter {unknown[0]!r}; {hint}", code="unknown_parameter", field=unknown[0]
        )


def int_param(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidQuery(f"{name}={raw!r} is not an integer", field=name) from None
    if not low <= value <= high:
        raise InvalidQuery(f"{name} must be between {low} and {high}", field=name)
    return value


def parse_read_params(params: Mapping[str, str], *, streaming: bool = False) -> ReadParams:
    """Validate the query; NDJSON streaming (``streaming``) has no limit unless one is given."""
    refuse_unknown(params, _KNOWN, f"known: {', '.join(sorted(_KNOWN))}")
    order = params.get("order", "desc").lower()
    if order not in ("asc", "desc"):
        raise InvalidQuery("order must be asc or desc", field="order")
    limit = int_param(params, "limit", 1, 1_000_000_000 if streaming else MAX_LIMIT)
    if limit is None and not streaming:
        limit = DEFAULT_LIMIT
    raw_from = params.get("from")
    raw_to = params.get("to")
    from_us = parse_time_us(raw_from, "from") if raw_from else None
    to_us = parse_time_us(raw_to, "to") if raw_to else None
    if from_us is not None and to_us is not None and to_us <= from_us:
        raise InvalidQuery("to must be later than from", field="to")
    return ReadParams(
        from_us=from_us,
        to_us=to_us,
        limit=limit,
        descending=order == "desc",
        after_seq=int_param(params, "after_seq", 0, 1 << 40),
        before_seq=int_param(params, "before_seq", 1, 1 << 40),
        raw_from=raw_from or None,
        raw_to=raw_to or None,
    )
