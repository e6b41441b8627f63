"""Reads of the log through export endpoints and sources' read_access (SPEC §5.1).

A passthrough output splices the stored payload texts into the answer (no parse, no
re-serialisation); a constructor output parses each payload once and renders it.
Events a ``strict`` query cannot render are left out and counted on the output.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from iotman.access.data_access import DATA_READ, authorise_data
from iotman.access.principal import Principal
from iotman.connect.json_codec import load_json
from iotman.engine.registry import CompiledOutput, ReadTarget
from iotman.errors import InvalidQuery
from iotman.export.aggregation import AggSpec
from iotman.export.read_params import ReadParams
from iotman.process.constructor import Constructor, StrictMissing
from iotman.storage.ports import AggregateQuery, EventQuery, Store, StoredEvent

__all__ = ["LogLines", "ReadPage", "ReadService", "check_read_auth", "render_event", "render_page"]

STREAM_CHUNK = 1000


@dataclass(slots=True)
class ReadPage:
    items: list[str]
    last_seq: int | None
    more: bool


@dataclass(slots=True)
class LogLines:
    """Rendered events after a position, in log order: (seq, JSON text) of each that rendered,
    the seq of the last event read (rendered or not) and whether the limit was reached."""

    lines: list[tuple[int, str]]
    last_seq: int | None
    full: bool


def check_read_auth(target: ReadTarget, principal: Principal | None, token_given: bool) -> None:
    """Who may read ``target`` (iotman:data:read, or the endpoint's required_scope)."""
    authorise_data(
        principal,
        token_given=token_given,
        workspace_id=target.workspace.id,
        workspace_slug=target.workspace.slug,
        mode=target.auth.value,
        required_scope=target.required_scope,
        default_scope=DATA_READ,
        what=f"reading {target.name!r}",
    )


class _Times:
    """RFC 3339 text of received_at; strftime once per second, not per event."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, us: int) -> str:
        second, micros = divmod(us, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{micros:06d}Z"


def _render(constructor: Constructor | None, rows: list[StoredEvent], target: ReadTarget) -> list[str]:
    if constructor is None:
        return [r.payload for r in rows]
    render = constructor.render_row
    dumps = orjson.dumps
    out: list[str] = []
    for row in rows:
        try:
            rendered = render(
                load_json(row.payload),
                row.seq,
                row.id,
                row.source,
                row.received_at_us,
                None,
                row.metadata,
                None,
                row.tags,
            )
        except StrictMissing as exc:
            target.output.status.fail(f"event {row.id}: {exc}")
            continue
        try:
            out.append(dumps(rendered).decode())
        except TypeError:  # integers beyond 64 bits
            out.append(json.dumps(rendered, separators=(",", ":")))
    return out


def render_event(output: CompiledOutput, event: StoredEvent) -> str:
    """One event as ``output`` renders it (JSON text); ValueError when a ``strict`` query finds nothing."""
    constructor = output.constructor
    if constructor is None:
        return event.payload
    try:
        rendered = constructor.render_row(
            load_json(event.payload),
            event.seq,
            event.id,
            event.source,
            event.received_at_us,
            None,
            event.metadata,
            None,
            event.tags,
        )
    except StrictMissing as exc:
        raise ValueError(f"output {output.name!r} cannot render event {event.id}: {exc}") from None
    try:
        return orjson.dumps(rendered).decode()
    except TypeError:  # integers beyond 64 bits
        return json.dumps(rendered, separators=(",", ":"))


class ReadService:
    def __init__(self, store: Store, reads: Executor) -> None:
        self._store = store
        self._reads = reads

    def _query(
        self, target: ReadTarget, params: ReadParams, limit: int, after: int | None, before: int | None
    ) -> EventQuery:
        output = target.output
        return EventQuery(
            workspace_id=target.workspace.id,
            sources=output.sources,
            tags=output.tags,
            after_seq=after,
            before_seq=before,
            from_us=params.from_us,
            to_us=params.to_us,
            limit=limit,
            descending=params.descending,
        )

    def _read_rendered(
        self, target: ReadTarget, query: EventQuery, render_limit: int | None = None
    ) -> tuple[list[int], list[str]]:
        """Seqs of the events read and the lines of the first ``render_limit`` of them.

        The store renders when the constructor allows it; otherwise Python does, and
        events a ``strict`` query cannot render have no line.
        """
        constructor = target.output.constructor
        if constructor is not None and constructor.spec is not None:
            rendered = self._store.read_rendered(query, constructor.spec)
            lines = [text for _, text in rendered]
            return [seq for seq, _ in rendered], lines if render_limit is None else lines[:render_limit]
        rows = self._store.read_events(query)
        return [r.seq for r in rows], _render(constructor, rows[:render_limit], target)

    async def page(self, target: ReadTarget, params: ReadParams) -> ReadPage:
        return await asyncio.get_running_loop().run_in_executor(self._reads, self.page_now, target, params)

    def page_now(self, target: ReadTarget, params: ReadParams) -> ReadPage:
        """``page`` in the caller's thread (a function's ``$iotman_call``, inside its transaction)."""
        limit = params.limit or 100
        # one more than asked: it tells whether there is a next page (and is not rendered twice)
        query = self._query(target, params, limit + 1, params.after_seq, params.before_seq)
        seqs, lines = self._read_rendered(target, query)
        more = len(seqs) > limit
        seqs = seqs[:limit]
        if more and len(lines) > limit:
            lines = lines[:limit]
        return ReadPage(lines, seqs[-1] if seqs else None, more)

    async def aggregate(
        self, target: ReadTarget, spec: AggSpec, from_us: int | None, to_us: int | None
    ) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(
            self._reads, self.aggregate_now, target, spec, from_us, to_us
        )

    def aggregate_now(
        self, target: ReadTarget, spec: AggSpec, from_us: int | None, to_us: int | None
    ) -> dict[str, Any]:
        """``aggregate`` in the caller's thread (a function's ``$iotman_call``)."""
        output = target.output
        query = AggregateQuery(
            EventQuery(target.workspace.id, sources=output.sources, tags=output.tags, from_us=from_us, to_us=to_us),
            spec.function,
            _agg_path(target, spec),
            spec.bucket_us,
            spec.group_by,
        )
        rows = self._store.aggregate(query)
        times = _Times()
        data: list[dict[str, Any]] = []
        for row in rows:
            item: dict[str, Any] = {}
            if spec.bucket is not None:
                item["bucket"] = times.format(row.bucket_us or 0)
            if spec.group_by is not None:
                item["group"] = row.group
            item["value"] = row.count if spec.function == "count" else row.value
            item["count"] = row.count
            data.append(item)
        return {"agg": spec.text, "bucket": spec.bucket, "group_by": spec.group_by, "data": data}

    async def stream(self, target: ReadTarget, params: ReadParams) -> AsyncIterator[bytes]:
        """NDJSON lines, read and rendered in chunks, each chunk in its own short read transaction.

        The next chunk is read (in a store thread) while the current one is sent.
        """
        remaining = params.limit
        after, before = params.after_seq, params.before_seq
        loop = asyncio.get_running_loop()

        def read(after: int | None, before: int | None) -> asyncio.Future[tuple[int, int | None, bytes]]:
            size = STREAM_CHUNK if remaining is None else min(STREAM_CHUNK, remaining)
            query = self._query(target, params, size, after, before)
            return loop.run_in_executor(self._reads, self._read_chunk, target, query)

        pending: asyncio.Future[tuple[int, int | None, bytes]] | None = read(after, before)
        while pending is not None:
            asked = STREAM_CHUNK if remaining is None else min(STREAM_CHUNK, remaining)
            count, last, body = await pending
            pending = None
            if remaining is not None:
                remaining -= count
            if last is not None and count == asked and (remaining is None or remaining > 0):
                if params.descending:
                    before = last
                else:
                    after = last
                pending = read(after, before)
            if body:
                yield body

    def lines_after(self, target: ReadTarget, after_seq: int, limit: int) -> LogLines:
        """The target's events after ``after_seq``, oldest first (live streams; in a store thread)."""
        output = target.output
        query = EventQuery(
            workspace_id=target.workspace.id,
            sources=output.sources,
            tags=output.tags,
            after_seq=after_seq,
            limit=limit,
            descending=False,
        )
        constructor = output.constructor
        if constructor is not None and constructor.spec is not None:
            pairs = self._store.read_rendered(query, constructor.spec)
            return LogLines(pairs, pairs[-1][0] if pairs else None, len(pairs) >= limit)
        rows = self._store.read_events(query)
        lines: list[tuple[int, str]] = []
        for row in rows:
            rendered = _render(constructor, [row], target)
            if rendered:
                lines.append((row.seq, rendered[0]))
        return LogLines(lines, rows[-1].seq if rows else None, len(rows) >= limit)

    def _read_chunk(self, target: ReadTarget, query: EventQuery) -> tuple[int, int | None, bytes]:
        """(events read, seq of the last, NDJSON body) of one chunk, in a store thread."""
        constructor = target.output.constructor
        if constructor is not None and constructor.spec is not None:
            chunk = self._store.read_rendered_text(query, constructor.spec)
            return chunk.count, chunk.last_seq, (chunk.text + "\n").encode() if chunk.count else b""
        seqs, lines = self._read_rendered(target, query)
        body = ("\n".join(lines) + "\n").encode() if lines else b""
        return len(seqs), seqs[-1] if seqs else None, body


def _agg_path(target: ReadTarget, spec: AggSpec) -> tuple[str | int, ...] | None:
    """The payload steps of the aggregated field (None for count)."""
    if spec.field is None:
        return None
    if '"' in spec.field or "\\" in spec.field:
        raise InvalidQuery(f"field {spec.field!r} cannot be aggregated", code="invalid_agg", field="agg")
    constructor = target.output.constructor
    if constructor is None:
        return (spec.field,)  # passthrough: a top-level payload key
    for field in constructor.fields:
        if field.name == spec.field:
            if field.payload_steps is None:
                raise InvalidQuery(
                    f"field {spec.field!r} is not a singular payload query (like $.value) and cannot be aggregated",
                    code="invalid_agg",
                    field="agg",
                )
            return field.payload_steps
    known = ", ".join(f.name for f in constructor.fields) or "none"
    raise InvalidQuery(
        f"output {target.output.name!r} has no field {spec.field!r} (fields: {known})", code="invalid_agg", field="agg"
    )


def render_page(page: ReadPage, next_url: str | None) -> bytes:
    return b'{"data":[' + ",".join(page.items).encode() + b'],"next_page":' + orjson.dumps(next_url) + b"}"
