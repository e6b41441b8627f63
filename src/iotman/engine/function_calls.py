"""``$iotman_call(method, path, body)``: a function's in-process call to its workspace's API.

The call goes to the same services as the HTTP routes, with the same checks and
answers, as the function's worker (its scopes bound what it may do), inside the
function's store transaction: what it appends, folds or defines is undone with the
function when it stops. Routes callable so far:

- ``POST /data/{ws}/{path}``: ingest (a JSON value; ``?batch=true`` for an array batch);
- ``GET /data/{ws}/{path}``: a page of an export endpoint or readable source, with the
  function's own appends in it, or ``?agg=`` over it (a range large enough to run in
  DuckDB sees committed events only);
- ``GET /views/{ws}/{name}/data``: view reads (``?key=`` or ``?prefix=&limit=&cursor=``);
- ``GET|POST /api/v1/workspaces/{ws}/{collection}``, ``GET|PUT|DELETE …/{name}``: the
  definition collections.

A non-2xx answer raises ``ApiCallFailed`` (the function stops with that status).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from iotman.access.principal import Principal
from iotman.access.route_scopes import COLLECTIONS, required_scope
from iotman.core.time_bounds import parse_time_us
from iotman.core.workspace import Workspace
from iotman.engine.admin_service import AdminService
from iotman.engine.ingest_service import IngestService, check_source_auth
from iotman.engine.read_service import ReadService, check_read_auth, render_page
from iotman.engine.registry import Registry
from iotman.engine.view_service import ViewService
from iotman.errors import Forbidden, NotFound
from iotman.export.aggregation import parse_agg
from iotman.export.read_params import parse_read_params

__all__ = ["ApiCalls", "CallAnswer"]

_TRUE = {"1", "true", "yes"}


class CallAnswer:
    """An in-process answer: the HTTP status and the JSON body."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body


class ApiCalls:
    def __init__(
        self, registry: Registry, ingest: IngestService, views: ViewService, admin: AdminService, read: ReadService
    ) -> None:
        self._registry = registry
        self._ingest = ingest
        self._views = views
        self._admin = admin
        self._read = read

    def call(
        self,
        ws: Workspace,
        worker: Principal,
        method: Any,
        path: Any,
        body: Any = None,
        *,
        on_define: Callable[[], None] | None = None,
    ) -> CallAnswer:
        """Raises an ``IotmanError`` for a refused call (the caller maps it to its status).
        ``on_define`` is called before a call that may change definitions."""
        if not isinstance(method, str) or not isinstance(path, str):
            raise NotFound("$iotman_call takes a method and a path, both text", code="route_not_callable")
        method = method.upper()
        parts = urlsplit(path)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        query = dict(parse_qsl(parts.query, keep_blank_values=True))  # `?key=` is a lookup of "", not a scan
        if len(segments) == 3 and segments[0] == "data" and method == "POST":
            self._own(ws, segments[1], path)
            return self._append(ws, worker, segments[2], body, query)
        if len(segments) == 3 and segments[0] == "data" and method == "GET":
            self._own(ws, segments[1], path)
            if "agg" in query:
                return self._aggregate(ws, worker, segments[2], query)
            return self._page(ws, worker, segments[2], query)
        if len(segments) == 4 and segments[0] == "views" and segments[3] == "data" and method == "GET":
            self._own(ws, segments[1], path)
            page = self._views.read_now(ws.slug, segments[2], query, worker, True)
            return CallAnswer(200, orjson.loads(page.body()))
        if len(segments) in (5, 6) and segments[:3] == ["api", "v1", "workspaces"] and segments[4] in COLLECTIONS:
            self._own(ws, segments[3], path)
            if method != "GET" and on_define is not None:
                on_define()
            return self._definitions(ws, worker, method, segments[4], segments[5] if len(segments) == 6 else None, body)
        raise NotFound(
            f"{method} {parts.path} cannot be called from a function (callable: POST and GET /data/…, "
            "GET /views/…/data, "
            "the definition collections under /api/v1/workspaces/…)",
            code="route_not_callable",
        )

    def reply(self, ws: Workspace, worker: Principal, source_name: str, reply: dict[str, Any]) -> None:
        """A trigger's reply appended to its ``reply_to`` source (the trigger's own right, not the worker's)."""
        record = self._registry.source_named(ws, source_name)
        self._ingest.accept_now(record, worker, orjson.dumps(reply), content_type="application/json")

    @staticmethod
    def _own(ws: Workspace, slug: str, path: str) -> None:
        if slug != ws.slug:
            raise Forbidden(
                f"a function calls its own workspace {ws.slug!r} only, not {path!r}", code="other_workspace"
            )

    def _append(self, ws: Workspace, worker: Principal, path: str, body: Any, query: dict[str, str]) -> CallAnswer:
        source = self._registry.source(ws, path)
        principal = check_source_auth(source, worker, True)
        batch = query.get("batch", "").lower() in _TRUE
        answer = self._ingest.accept_now(
            source, principal, orjson.dumps(body), content_type="application/json", batch=batch
        )
        return CallAnswer(202, orjson.loads(answer.body))

    def _page(self, ws: Workspace, worker: Principal, path: str, query: dict[str, str]) -> CallAnswer:
        target = self._registry.read_target(ws, path)
        check_read_auth(target, worker, True)
        params = parse_read_params(query)
        page = self._read.page_now(target, params)
        next_page = None
        if page.more and page.last_seq is not None:
            next_page = f"/data/{ws.slug}/{path}?{params.next_page_query(page.last_seq)}"
        return CallAnswer(200, orjson.loads(render_page(page, next_page)))

    def _aggregate(self, ws: Workspace, worker: Principal, path: str, query: dict[str, str]) -> CallAnswer:
        target = self._registry.read_target(ws, path)
        check_read_auth(target, worker, True)
        spec = parse_agg(query)
        from_us = parse_time_us(query["from"], "from") if query.get("from") else None
        to_us = parse_time_us(query["to"], "to") if query.get("to") else None
        return CallAnswer(200, self._read.aggregate_now(target, spec, from_us, to_us))

    def _definitions(
        self, ws: Workspace, worker: Principal, method: str, collection: str, name: str | None, body: Any
    ) -> CallAnswer:
        template = f"/api/v1/workspaces/{{ws}}/{collection}" + ("/{name}" if name is not None else "")
        try:
            scope = required_scope(method, template)
        except LookupError:
            raise NotFound(f"{method} {template} is not a route", code="route_not_callable") from None
        if scope is not None and not worker.has_scope(scope):
            raise Forbidden(
                f"the function's worker lacks scope {scope!r} needed for {method} {collection}",
                code="insufficient_scope",
                details={"required_scope": scope},
            )
        admin = self._admin
        if name is None:
            if method == "GET":
                return CallAnswer(200, {"data": admin.list_definitions(ws.slug, collection)})
            record = admin.create(ws.slug, collection, body, worker)
            return CallAnswer(201, admin.get(ws.slug, collection, record.name, reveal=True))
        if method == "GET":
            return CallAnswer(200, admin.get(ws.slug, collection, name))
        if method == "PUT":
            admin.replace(ws.slug, collection, name, body, worker)
            return CallAnswer(200, admin.get(ws.slug, collection, name))
        admin.delete(ws.slug, collection, name)
        return CallAnswer(204, None)
