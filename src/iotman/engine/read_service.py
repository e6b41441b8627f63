"""Reads of the log through a source's passthrough export (SPEC §2.1 ``read_access``, §5.1).

Pages are rendered by splicing the stored payload texts into the answer, so a read
never parses and re-serialises events it only passes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass

import orjson

from iotman.access.principal import Principal
from iotman.core.source import ReadAuth
from iotman.engine.registry import CompiledSource
from iotman.errors import Forbidden, NotFound, Unauthenticated
from iotman.export.read_params import ReadParams
from iotman.storage.ports import EventQuery, Store, StoredEvent

__all__ = ["ReadPage", "ReadService", "check_read_auth"]

READ_SCOPE = "iotman:data:read"
STREAM_CHUNK = 1000


@dataclass(slots=True)
class ReadPage:
    items: list[str]
    last_seq: int | None
    more: bool


def check_read_auth(source: CompiledSource, principal: Principal | None, token_given: bool) -> None:
    definition = source.definition
    if not definition.read_access:
        raise NotFound(
            f"source {definition.name!r} has no read access; set read_access: true to serve GET on its path",
            code="read_access_off",
        )
    if definition.read_auth is ReadAuth.NONE:
        return
    if principal is None:
        if token_given:
            raise Unauthenticated("the bearer token is not valid", code="invalid_token")
        if definition.read_auth is ReadAuth.OAUTH2_OR_NONE:
            return
        raise Unauthenticated("reading this source requires a bearer token", code="token_required")
    if principal.workspace_id != source.workspace.id:
        raise Unauthenticated(
            f"the bearer token belongs to another workspace, not {source.workspace.slug!r}",
            code="token_wrong_workspace",
        )
    if not principal.has_scope(READ_SCOPE):
        raise Forbidden(f"the token lacks scope {READ_SCOPE!r}", code="insufficient_scope")


class ReadService:
    def __init__(self, store: Store, reads: Executor) -> None:
        self._store = store
        self._reads = reads

    def _query(
        self, source: CompiledSource, params: ReadParams, limit: int, after: int | None, before: int | None
    ) -> EventQuery:
        return EventQuery(
            workspace_id=source.workspace.id,
            source=source.definition.name,
            after_seq=after,
            before_seq=before,
            from_us=params.from_us,
            to_us=params.to_us,
            limit=limit,
            descending=params.descending,
        )

    async def page(self, source: CompiledSource, params: ReadParams) -> ReadPage:
        limit = params.limit or 100
        query = self._query(source, params, limit + 1, params.after_seq, params.before_seq)
        rows = await asyncio.get_running_loop().run_in_executor(self._reads, self._store.read_events, query)
        more = len(rows) > limit
        rows = rows[:limit]
        return ReadPage([r.payload for r in rows], rows[-1].seq if rows else None, more)

    async def stream(self, source: CompiledSource, params: ReadParams) -> AsyncIterator[bytes]:
        """NDJSON lines, read in chunks of separate short read transactions."""
        remaining = params.limit
        after, before = params.after_seq, params.before_seq
        loop = asyncio.get_running_loop()
        while remaining is None or remaining > 0:
            size = STREAM_CHUNK if remaining is None else min(STREAM_CHUNK, remaining)
            query = self._query(source, params, size, after, before)
            rows: list[StoredEvent] = await loop.run_in_executor(self._reads, self._store.read_events, query)
            if not rows:
                return
            yield ("\n".join(r.payload for r in rows) + "\n").encode()
            if remaining is not None:
                remaining -= len(rows)
            if params.descending:
                before = rows[-1].seq
            else:
                after = rows[-1].seq
            if len(rows) < size:
                return


def render_page(page: ReadPage, next_url: str | None) -> bytes:
    return b'{"data":[' + ",".join(page.items).encode() + b'],"next_page":' + orjson.dumps(next_url) + b"}"
