"""Reading views (SPEC §4.1): point lookups by key and ordered prefix scans."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

import orjson

from iotman.access.data_access import DATA_READ, require_scope, require_token
from iotman.access.principal import Principal
from iotman.core.clock import format_us
from iotman.core.workspace import Workspace
from iotman.engine.registry import Registry
from iotman.engine.view_rebuild import RebuildProgress, ViewRebuilds
from iotman.errors import InvalidQuery
from iotman.export.read_params import int_param, refuse_unknown
from iotman.storage.ports import Store, ViewRow

__all__ = ["ViewPage", "ViewService", "etag_of"]

REBUILD_SCOPE = "iotman:views:update"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_KNOWN = frozenset({"key", "prefix", "limit", "cursor"})


@dataclass(frozen=True, slots=True)
class ViewPage:
    rows: list[ViewRow]
    etag: str | None  # point reads only
    next_cursor: str | None  # scans with more rows

    def body(self, next_page_url: str | None = None) -> bytes:
        """``{"data": [{key, value, updated_at, seq}], "next_page"?}``."""
        tail = b"" if next_page_url is None else b',"next_page":' + orjson.dumps(next_page_url)
        return b'{"data":[' + b",".join(_row_json(r) for r in self.rows) + b"]" + tail + b"}"


def etag_of(row: ViewRow | None) -> str:
    return '"none"' if row is None else f'"{row.seq}.{row.updated_at_us}"'


def _row_json(row: ViewRow) -> bytes:
    # the value is stored JSON text: put it in as it is, no parse and dump
    return b"".join(
        (
            b'{"key":',
            orjson.dumps(row.key),
            b',"value":',
            row.value.encode(),
            b',"updated_at":"',
            format_us(row.updated_at_us).encode(),
            b'","seq":',
            str(row.seq).encode(),
            b"}",
        )
    )


class ViewService:
    def __init__(self, store: Store, registry: Registry, reads: Executor, rebuilds: ViewRebuilds) -> None:
        self._store = store
        self._registry = registry
        self._reads = reads
        self._rebuilds = rebuilds

    @staticmethod
    def _allow(ws: Workspace, principal: Principal | None, token_given: bool, scope: str, what: str) -> None:
        require_scope(ws.id, ws.slug, principal, token_given, scope, what)

    def _authorise(self, slug: str, name: str, principal: Principal | None, token_given: bool) -> tuple[int, str]:
        what = f"view {name!r}"
        require_token(principal, token_given, what)
        ws = self._registry.workspace(slug)
        # who may read this workspace's views first: whether a view exists is not for strangers
        self._allow(ws, principal, token_given, DATA_READ, what)
        view = self._registry.view(ws, name)
        if view.definition.required_scope is not None:
            self._allow(ws, principal, token_given, view.definition.required_scope, what)
        return ws.id, view.name

    def start_rebuild(self, slug: str, name: str, principal: Principal | None, token_given: bool) -> RebuildProgress:
        """Start re-folding the log into view ``name`` (scope ``iotman:views:update``)."""
        ws = self._registry.workspace(slug)
        self._allow(ws, principal, token_given, REBUILD_SCOPE, f"rebuilding view {name!r}")
        return self._rebuilds.start(ws, name)

    def read_now(
        self, slug: str, name: str, query: dict[str, str], principal: Principal | None, token_given: bool
    ) -> ViewPage:
        """``read`` in the caller's thread (a function's ``$iotman_call``, inside its transaction)."""
        return self._read(slug, name, query, principal, token_given)

    def _read(
        self, slug: str, name: str, query: dict[str, str], principal: Principal | None, token_given: bool
    ) -> ViewPage:
        refuse_unknown(query, _KNOWN, "a view read takes key, or prefix, limit and cursor")
        ws_id, view = self._authorise(slug, name, principal, token_given)
        if "key" in query:
            if len(query) > 1:
                raise InvalidQuery("key is a point lookup: give it alone", code="invalid_query", field="key")
            row = self._store.view_row(ws_id, view, query["key"])
            return ViewPage([] if row is None else [row], etag_of(row), None)
        limit = int_param(query, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
        rows = self._store.view_rows(ws_id, view, query.get("prefix", ""), query.get("cursor"), limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return ViewPage(rows, None, rows[-1].key if more and rows else None)

    async def read(
        self, slug: str, name: str, query: dict[str, str], principal: Principal | None, token_given: bool
    ) -> ViewPage:
        ws = self._registry.cached_workspace(slug)
        if "key" in query and ws is not None and self._registry.cached_views(ws) is not None:
            # a point read is one primary-key lookup (tens of µs): answered on the event loop, it
            # does not queue behind ingest work in the thread pool nor hand the GIL over twice
            return self._read(slug, name, query, principal, token_given)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reads, self._read, slug, name, query, principal, token_given)
