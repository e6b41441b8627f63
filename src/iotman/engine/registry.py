"""Cached, compiled definitions and tokens (the hot paths must not query or compile).

Positive results are cached; misses go to the store, so a workspace or token created
by the CLI in another process is found at once. Definition changes made through this
engine invalidate the workspace's compiled definitions; tokens expire from the cache
after ``token_cache_seconds``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from iotman.access.bearer_tokens import hash_token
from iotman.access.principal import Principal
from iotman.compute.jsonata_engine import CompiledJsonata, EvalLimits, JsonataEngine
from iotman.compute.jsonata_fields import compile_jsonata_field
from iotman.compute.view_fold import CompiledView, ViewStatus, compile_batch_reducer
from iotman.connect.schema_check import SchemaCheck, compile_schema
from iotman.core.output import EndpointAuth, ExportEndpointDefinition, OutputDefinition
from iotman.core.source import ReadAuth, SourceDefinition
from iotman.core.tag_rule import TagRuleDefinition
from iotman.core.view import BUILT_IN_REDUCERS, ViewDefinition
from iotman.core.webhook import MQTT_PUSH_TARGET, WEBHOOK_TARGET
from iotman.core.workspace import Workspace
from iotman.engine.definition_kinds import ENDPOINT, MQTT_PUSH, OUTPUT, SOURCE, TAG_RULE, VIEW, WEBHOOK
from iotman.errors import Conflict, DefinitionInvalid, NotFound
from iotman.process.constructor import Constructor, compile_constructor
from iotman.process.tag_rules import RuleStatus, TagSet, compile_tag_rule
from iotman.storage.ports import DefinitionRecord, Store

__all__ = [
    "SOURCE_KIND",
    "CompiledOutput",
    "CompiledSource",
    "DeliveryTarget",
    "OutputStatus",
    "ReadTarget",
    "Registry",
]

SOURCE_KIND = SOURCE.kind
SERVER_WORKSPACE = 0
"""The workspace id of server-admin tokens (real workspace ids start at 1)."""


@dataclass(frozen=True, slots=True)
class CompiledSource:
    workspace: Workspace
    definition: SourceDefinition
    schema: SchemaCheck | None
    max_body_bytes: int

    @property
    def path(self) -> str:
        return self.definition.effective_path


@dataclass(slots=True)
class OutputStatus:
    """Events an output could not render (``strict`` queries that found nothing), per process."""

    failures: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures += 1
            self.last_error = message

    def to_json(self) -> dict[str, Any]:
        return {"failures": self.failures, "last_error": self.last_error}


@dataclass(frozen=True, slots=True)
class CompiledOutput:
    name: str
    sources: tuple[str, ...] | None
    tags: dict[str, Any] | None
    constructor: Constructor | None
    status: OutputStatus


@dataclass(frozen=True, slots=True)
class ReadTarget:
    """What GET /data/{ws}/{path} serves: an export endpoint, or a source's read_access."""

    workspace: Workspace
    name: str
    output: CompiledOutput
    auth: EndpointAuth
    required_scope: str | None
    cors_origins: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """A webhook or MQTT push as ingest sees it: its target key and what it selects."""

    key: str
    sources: tuple[str, ...] | None
    tags: dict[str, Any] | None


_READ_AUTH = {
    ReadAuth.OAUTH2: EndpointAuth.OAUTH2,
    ReadAuth.OAUTH2_OR_NONE: EndpointAuth.OAUTH2_OR_NONE,
    ReadAuth.NONE: EndpointAuth.NONE,
}


class Registry:
    def __init__(
        self,
        store: Store,
        *,
        default_max_body: int,
        token_ttl_s: float,
        jsonata: JsonataEngine,
        jsonata_limits: EvalLimits,
    ) -> None:
        self._store = store
        self.jsonata = jsonata
        self.jsonata_limits = jsonata_limits
        self._views: dict[int, list[CompiledView]] = {}
        self._view_status: dict[tuple[int, str], ViewStatus] = {}
        self._default_max_body = default_max_body
        self._token_ttl = token_ttl_s
        self._workspaces: dict[str, Workspace] = {}
        self._sources: dict[tuple[int, str], CompiledSource] = {}
        self._targets: dict[tuple[int, str], ReadTarget] = {}
        self._tag_sets: dict[int, TagSet] = {}
        self._delivery_targets: dict[int, list[DeliveryTarget]] = {}
        self._tokens: dict[str, tuple[float, Principal]] = {}
        self._rule_status: dict[tuple[int, str, int], RuleStatus] = {}
        self._output_status: dict[tuple[int, str], OutputStatus] = {}
        # bumped on every invalidation: a lookup that raced a definition change does not
        # put its (possibly stale) result into the cache
        self._generation = 0
        # set on a thread running a function's transaction: its definitions are not committed
        # (and may be undone), so it neither reads the shared caches nor fills them
        self._private = threading.local()

    @contextlib.contextmanager
    def uncached(self) -> Iterator[None]:
        """Within: this thread's definition lookups go to the store, and nothing is cached."""
        self._private.on = True
        try:
            yield
        finally:
            self._private.on = False

    def _shared(self) -> bool:
        return not getattr(self._private, "on", False)

    # workspaces ------------------------------------------------------------------
    def cached_workspace(self, slug: str) -> Workspace | None:
        return self._workspaces.get(slug)

    def workspace(self, slug: str) -> Workspace:
        found = self._workspaces.get(slug)
        if found is None:
            found = self._store.get_workspace(slug)
            if found is None:
                raise NotFound(f"workspace {slug!r} does not exist", code="workspace_not_found", field="ws")
            self._workspaces[slug] = found
        return found

    def forget_workspace(self, slug: str) -> None:
        ws = self._workspaces.pop(slug, None)
        if ws is not None:
            self.forget_definitions(ws)

    def forget_definitions(self, ws: Workspace) -> None:
        self._generation += 1
        # list() copies the keys in one step, safe while other threads add entries
        for cache in (self._sources, self._targets):
            for key in list(cache):
                if key[0] == ws.id:
                    cache.pop(key, None)
        self._tag_sets.pop(ws.id, None)
        self._views.pop(ws.id, None)
        self._delivery_targets.pop(ws.id, None)

    # sources ---------------------------------------------------------------------
    def cached_source(self, ws: Workspace, path: str) -> CompiledSource | None:
        return self._sources.get((ws.id, path)) if self._shared() else None

    def source(self, ws: Workspace, path: str) -> CompiledSource:
        shared = self._shared()
        found = self._sources.get((ws.id, path)) if shared else None
        if found is None:
            generation = self._generation
            record = self._store.find_definition_by_path(ws.id, SOURCE.kind, path)
            if record is None:
                raise NotFound(
                    f"no source at /data/{ws.slug}/{path}; create one with POST /api/v1/workspaces/{ws.slug}/sources",
                    code="source_not_found",
                    field="path",
                )
            found = self.compile_source(ws, record)
            if shared and generation == self._generation:
                self._sources[(ws.id, path)] = found
        return found

    def source_named(self, ws: Workspace, name: str) -> CompiledSource:
        """A source by its name (not its path), compiled afresh (uncommon: trigger replies)."""
        record = self._store.get_definition(ws.id, SOURCE.kind, name)
        if record is None:
            raise NotFound(f"source {name!r} does not exist", code="source_not_found", field="reply_to")
        return self.compile_source(ws, record)

    def compile_source(self, ws: Workspace, record: DefinitionRecord) -> CompiledSource:
        definition = SourceDefinition.model_validate(record.body)
        schema = None if definition.json_schema is None else compile_schema(definition.json_schema)
        limit = definition.max_body_bytes or self._default_max_body
        return CompiledSource(ws, definition, schema, limit)

    # tag rules -------------------------------------------------------------------
    def cached_tag_set(self, ws: Workspace) -> TagSet | None:
        return self._tag_sets.get(ws.id) if self._shared() else None

    def tag_set(self, ws: Workspace) -> TagSet:
        shared = self._shared()
        found = self._tag_sets.get(ws.id) if shared else None
        if found is None:
            generation = self._generation
            rules = [
                compile_tag_rule(TagRuleDefinition.model_validate(r.body), self.rule_status(ws, r.name, r.version))
                for r in self._store.list_definitions(ws.id, TAG_RULE.kind)
            ]
            found = TagSet(rules)
            if shared and generation == self._generation:
                self._tag_sets[ws.id] = found
        return found

    def rule_status(self, ws: Workspace, name: str, version: int) -> RuleStatus:
        return self._rule_status.setdefault((ws.id, name, version), RuleStatus())

    # views -----------------------------------------------------------------------------
    def view_status(self, ws: Workspace, name: str) -> ViewStatus:
        return self._view_status.setdefault((ws.id, name), ViewStatus())

    def compile_view(self, ws: Workspace, definition: ViewDefinition) -> CompiledView:
        def compiled(name: str, text: str | None) -> CompiledJsonata | None:
            return None if text is None else compile_jsonata_field(self.jsonata, text, name)

        key = compile_jsonata_field(self.jsonata, definition.key, "key")
        reducer = None if definition.reducer in BUILT_IN_REDUCERS else compiled("reducer", definition.reducer)
        compiled("scope_field", definition.scope_field)  # compiled to check it; applied with end-user reads
        return CompiledView(
            definition,
            key,
            reducer,
            compiled("init", definition.init),
            self.jsonata_limits,
            self.view_status(ws, definition.name),
            None if reducer is None else compile_batch_reducer(self.jsonata, definition.reducer),
        )

    def cached_views(self, ws: Workspace) -> list[CompiledView] | None:
        return self._views.get(ws.id) if self._shared() else None

    def views(self, ws: Workspace) -> list[CompiledView]:
        """The workspace's views that compile; one that does not (saved under another JSONata
        engine, say) is left out and reported on its status, never failing ingest."""
        shared = self._shared()
        found = self._views.get(ws.id) if shared else None
        if found is None:
            generation = self._generation
            found = []
            for record in self._store.list_definitions(ws.id, VIEW.kind):
                status = self.view_status(ws, record.name)
                try:
                    found.append(self.compile_view(ws, ViewDefinition.model_validate(record.body)))
                    status.broken = None
                except (DefinitionInvalid, ValueError) as exc:
                    status.broken = str(exc)
            if shared and generation == self._generation:
                self._views[ws.id] = found
        return found

    def view(self, ws: Workspace, name: str) -> CompiledView:
        for view in self.cached_views(ws) or self.views(ws):
            if view.name == name:
                return view
        broken = self._view_status.get((ws.id, name))
        if broken is not None and broken.broken is not None:
            raise Conflict(
                f"view {name!r} does not compile with this server's JSONata engine: {broken.broken}",
                code="view_broken",
                field="name",
            )
        raise NotFound(f"view {name!r} does not exist", code="view_not_found", field="name")

    # outputs and reads ---------------------------------------------------------------
    def output_status(self, ws: Workspace, name: str) -> OutputStatus:
        return self._output_status.setdefault((ws.id, name), OutputStatus())

    def compile_output(self, ws: Workspace, definition: OutputDefinition) -> CompiledOutput:
        select = definition.select
        return CompiledOutput(
            definition.name,
            tuple(select.sources) if select.sources is not None else None,
            dict(select.tags) if select.tags else None,
            compile_constructor(definition.constructor) if definition.constructor is not None else None,
            self.output_status(ws, definition.name),
        )

    def output(self, ws: Workspace, name: str) -> CompiledOutput:
        record = self._store.get_definition(ws.id, OUTPUT.kind, name)
        if record is None:
            raise NotFound(f"output {name!r} does not exist", code="output_not_found", field="output")
        return self.compile_output(ws, OutputDefinition.model_validate(record.body))

    def cached_read_target(self, ws: Workspace, path: str) -> ReadTarget | None:
        return self._targets.get((ws.id, path)) if self._shared() else None

    def read_target(self, ws: Workspace, path: str) -> ReadTarget:
        shared = self._shared()
        found = self._targets.get((ws.id, path)) if shared else None
        if found is not None:
            return found
        generation = self._generation
        record = self._store.find_definition_by_path(ws.id, ENDPOINT.kind, path)
        if record is not None:
            endpoint = ExportEndpointDefinition.model_validate(record.body)
            found = ReadTarget(
                ws,
                endpoint.name,
                self.output(ws, endpoint.output),
                endpoint.auth,
                endpoint.required_scope,
                tuple(endpoint.cors_origins),
            )
        else:
            try:
                source = self.source(ws, path).definition
            except NotFound:
                raise NotFound(
                    f"nothing to read at /data/{ws.slug}/{path}: no export endpoint or source has this path",
                    code="endpoint_not_found",
                    field="path",
                ) from None
            if not source.read_access:
                raise NotFound(
                    f"nothing to read at /data/{ws.slug}/{path}: source {source.name!r} has read_access off "
                    "and no export endpoint uses this path",
                    code="read_access_off",
                )
            passthrough = CompiledOutput(source.name, (source.name,), None, None, self.output_status(ws, source.name))
            found = ReadTarget(ws, source.name, passthrough, _READ_AUTH[source.read_auth], None, ())
        if shared and generation == self._generation:
            self._targets[(ws.id, path)] = found
        return found

    # webhooks and MQTT pushes ----------------------------------------------------------
    def pushed_output(self, ws: Workspace, body: dict[str, Any]) -> CompiledOutput:
        """The output a webhook or MQTT push definition (its stored body) pushes."""
        name = body.get("output")
        if name is None:
            record = self._store.get_definition(ws.id, ENDPOINT.kind, body["endpoint"])
            if record is None:
                raise NotFound(f"export endpoint {body['endpoint']!r} does not exist", code="endpoint_not_found")
            name = record.body["output"]
        return self.output(ws, name)

    def cached_delivery_targets(self, ws: Workspace) -> list[DeliveryTarget] | None:
        return self._delivery_targets.get(ws.id) if self._shared() else None

    def delivery_targets(self, ws: Workspace) -> list[DeliveryTarget]:
        shared = self._shared()
        found = self._delivery_targets.get(ws.id) if shared else None
        if found is None:
            generation = self._generation
            found = []
            for kind, prefix in ((WEBHOOK, WEBHOOK_TARGET), (MQTT_PUSH, MQTT_PUSH_TARGET)):
                for record in self._store.list_definitions(ws.id, kind.kind):
                    try:
                        output = self.pushed_output(ws, record.body)
                    except NotFound:
                        continue  # refused at save time; a race with a delete at worst
                    found.append(DeliveryTarget(prefix + record.name, output.sources, output.tags))
            if shared and generation == self._generation:
                self._delivery_targets[ws.id] = found
        return found

    # tokens ----------------------------------------------------------------------
    def cached_principal(self, token: str) -> Principal | None:
        entry = self._tokens.get(token)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    def principal(self, token: str) -> Principal | None:
        cached = self.cached_principal(token)
        if cached is not None:
            return cached
        record = self._store.find_token(hash_token(token))
        if record is None:
            return None
        if record.workspace_id == SERVER_WORKSPACE:
            principal = Principal("server", None, record.name, record.scopes, record.id)
        else:
            principal = Principal("token", record.workspace_id, record.name, record.scopes, record.id)
        if len(self._tokens) > 100_000:
            self._tokens.clear()
        self._tokens[token] = (time.monotonic() + self._token_ttl, principal)
        return principal
