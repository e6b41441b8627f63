"""``?agg=`` on export endpoints (SPEC §3.3): what to compute, parsed and checked.

``agg=count`` or ``agg=fn(field)`` with fn in sum, avg, min, max, p50, p95, p99, where
field names a top-level field of the output's constructor that is a singular payload
query (``v: $.value``), or, for a passthrough output, a top-level payload key.
``bucket=1m|5m|1h|1d`` groups by time; ``group_by=<tag>`` by a tag's value. The store
computes it (SQL), never a Python loop over events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from iotman.core.tag_rule import TAG_NAME
from iotman.errors import InvalidQuery

__all__ = ["AGG_FUNCTIONS", "BUCKETS", "AggSpec", "parse_agg"]

AGG_FUNCTIONS = frozenset({"count", "sum", "avg", "min", "max", "p50", "p95", "p99"})
BUCKETS = {"1m": 60_000_000, "5m": 300_000_000, "1h": 3_600_000_000, "1d": 86_400_000_000}
_AGG = re.compile(r"(?P<fn>[a-z0-9]+)(\((?P<field>[^()]*)\))?")
_ALLOWED_WITH_AGG = frozenset({"agg", "bucket", "group_by", "from", "to"})


@dataclass(frozen=True, slots=True)
class AggSpec:
    function: str
    field: str | None
    bucket: str | None
    bucket_us: int | None
    group_by: str | None

    @property
    def text(self) -> str:
        return self.function if self.field is None else f"{self.function}({self.field})"


def parse_agg(params: Mapping[str, str]) -> AggSpec:
    raw = params["agg"].strip()
    match = _AGG.fullmatch(raw)
    if match is None or match.group("fn") not in AGG_FUNCTIONS:
        raise InvalidQuery(
            f"agg={raw!r}: expected count or fn(field) with fn one of {', '.join(sorted(AGG_FUNCTIONS - {'count'}))}",
            code="invalid_agg",
            field="agg",
        )
    function = match.group("fn")
    field = (match.group("field") or "").strip() or None
    if function != "count" and field is None:
        raise InvalidQuery(f"agg={function} needs a field: {function}(v)", code="invalid_agg", field="agg")
    if function == "count" and field is not None:
        raise InvalidQuery("agg=count takes no field", code="invalid_agg", field="agg")
    extra = sorted(set(params) - _ALLOWED_WITH_AGG)
    if extra:
        raise InvalidQuery(
            f"{extra[0]!r} does not go with agg (agg takes from, to, bucket and group_by)",
            code="unknown_parameter",
            field=extra[0],
        )
    bucket = params.get("bucket") or None
    if bucket is not None and bucket not in BUCKETS:
        raise InvalidQuery(f"bucket must be one of {', '.join(BUCKETS)}", code="invalid_agg", field="bucket")
    group_by = params.get("group_by") or None
    if group_by is not None and not TAG_NAME.fullmatch(group_by):
        raise InvalidQuery(f"group_by={group_by!r} is not a tag key", code="invalid_agg", field="group_by")
    return AggSpec(function, field, bucket, BUCKETS[bucket] if bucket else None, group_by)
