"""Cross-checks of definitions when they are saved or deleted.

Each definition is compiled (queries, constructors, schemas, regular expressions) so
a mistake is a 422 at save time with the field and position, never a failure at
ingest or read time. References between definitions are checked both ways: an
output cannot select an unknown source or tag, and an output still served by an
endpoint cannot be deleted.
"""

from __future__ import annotations

from typing import Any

from iotman.compute.jsonata_engine import JsonataEngine
from iotman.compute.jsonata_fields import compile_jsonata_field
from iotman.connect.schema_check import compile_schema
from iotman.core.function import ClientDefinition, FunctionDefinition
from iotman.core.output import EndpointAuth, ExportEndpointDefinition, OutputDefinition
from iotman.core.source import SchemaMode, SourceAuth, SourceDefinition
from iotman.core.tag_rule import TagRuleDefinition
from iotman.core.view import BUILT_IN_REDUCERS, ViewDefinition
from iotman.core.workspace import Workspace
from iotman.engine.definition_kinds import (
    CLIENT,
    ENDPOINT,
    FUNCTION,
    OUTPUT,
    SOURCE,
    TAG_RULE,
    VIEW,
    DefinitionKind,
)
from iotman.errors import Conflict, DefinitionInvalid
from iotman.process.constructor import compile_constructor
from iotman.process.tag_rules import compile_tag_rule
from iotman.storage.ports import Store

__all__ = ["DefinitionChecks"]


class DefinitionChecks:
    def __init__(self, store: Store, jsonata: JsonataEngine) -> None:
        self._store = store
        self._jsonata = jsonata

    def _names(self, ws: Workspace, kind: DefinitionKind) -> set[str]:
        return {r.name for r in self._store.list_definitions(ws.id, kind.kind)}

    def check(self, ws: Workspace, kind: DefinitionKind, definition: Any, stored: dict[str, Any]) -> None:
        if kind is SOURCE:
            self._source(ws, definition, stored)
        elif kind is TAG_RULE:
            self._tag_rule(ws, definition)
        elif kind is OUTPUT:
            self._output(ws, definition)
        elif kind is ENDPOINT:
            self._endpoint(ws, definition, stored)
        elif kind is VIEW:
            self._view(ws, definition)
        elif kind is FUNCTION:
            self._function(ws, definition)
        elif kind is CLIENT:
            self._client(ws, definition)

    def _function(self, ws: Workspace, definition: FunctionDefinition) -> None:
        compile_jsonata_field(self._jsonata, definition.body, "body")
        worker = self._store.get_definition(ws.id, CLIENT.kind, definition.worker)
        if worker is None:
            raise DefinitionInvalid(
                f"worker {definition.worker!r} is not a client of this workspace; create it in clients first",
                code="unknown_client",
                field="worker",
            )
        if not worker.body.get("is_worker"):
            raise DefinitionInvalid(
                f"client {definition.worker!r} is not a worker (is_worker: false)", code="not_a_worker", field="worker"
            )

    def _client(self, ws: Workspace, definition: ClientDefinition) -> None:
        if not definition.is_worker:
            users = self._worker_users(ws, definition.name)
            if users:
                raise Conflict(
                    f"client {definition.name!r} runs function {users[0]!r}: it must stay a worker",
                    code="in_use",
                    field="is_worker",
                    details={"used_by": users},
                )

    def _worker_users(self, ws: Workspace, client: str) -> list[str]:
        return [r.name for r in self._store.list_definitions(ws.id, FUNCTION.kind) if r.body.get("worker") == client]

    def _view(self, ws: Workspace, definition: ViewDefinition) -> None:
        compile_jsonata_field(self._jsonata, definition.key, "key")
        if definition.reducer not in BUILT_IN_REDUCERS:
            compile_jsonata_field(self._jsonata, definition.reducer, "reducer")
        for name in ("init", "scope_field"):
            text = getattr(definition, name)
            if text is not None:
                compile_jsonata_field(self._jsonata, text, name)
        self._unknown_sources(ws, definition.sources, "sources")

    def _source(self, ws: Workspace, definition: SourceDefinition, stored: dict[str, Any]) -> None:
        if definition.json_schema is not None:
            compile_schema(definition.json_schema)
        elif definition.schema_mode is not None and definition.schema_mode is not SchemaMode.OFF:
            raise DefinitionInvalid(
                f"schema_mode {definition.schema_mode.value!r} needs a schema",
                code="invalid_definition",
                field="schema_mode",
            )
        if definition.required_scope is not None and definition.auth is SourceAuth.NONE:
            raise DefinitionInvalid(
                "required_scope needs auth 'oauth2' (an open source checks no token)",
                code="invalid_definition",
                field="required_scope",
            )
        if definition.read_access:
            endpoint = self._store.find_definition_by_path(ws.id, ENDPOINT.kind, stored["path"])
            if endpoint is not None:
                raise Conflict(
                    f"export endpoint {endpoint.name!r} already serves GET on path {stored['path']!r}; "
                    "read_access would serve it too",
                    code="path_taken",
                    field="read_access",
                )

    def _unknown_sources(self, ws: Workspace, names: list[str] | None, field: str) -> None:
        if names is None:
            return
        unknown = sorted(set(names) - self._names(ws, SOURCE))
        if unknown:
            raise DefinitionInvalid(f"{field} names unknown source {unknown[0]!r}", code="unknown_source", field=field)

    def _tag_rule(self, ws: Workspace, definition: TagRuleDefinition) -> None:
        compile_tag_rule(definition)
        self._unknown_sources(ws, definition.sources, "sources")

    def _output(self, ws: Workspace, definition: OutputDefinition) -> None:
        if definition.constructor is not None:
            compile_constructor(definition.constructor)
        self._unknown_sources(ws, definition.select.sources, "select.sources")
        tags = definition.select.tags or {}
        unknown = sorted(set(tags) - self._names(ws, TAG_RULE))
        if unknown:
            raise DefinitionInvalid(
                f"select.tags names {unknown[0]!r}, but no tag rule makes that tag",
                code="unknown_tag",
                field="select.tags",
            )

    def _endpoint(self, ws: Workspace, definition: ExportEndpointDefinition, stored: dict[str, Any]) -> None:
        if definition.required_scope is not None and definition.auth is EndpointAuth.NONE:
            raise DefinitionInvalid(
                "required_scope needs auth 'oauth2' or 'oauth2+none'", code="invalid_definition", field="required_scope"
            )
        if definition.output not in self._names(ws, OUTPUT):
            raise DefinitionInvalid(
                f"output {definition.output!r} does not exist", code="unknown_output", field="output"
            )
        source = self._store.find_definition_by_path(ws.id, SOURCE.kind, stored["path"])
        if source is not None and source.body.get("read_access"):
            raise Conflict(
                f"source {source.name!r} serves GET on path {stored['path']!r} (read_access); turn it off first",
                code="path_taken",
                field="path",
            )

    def check_unused(self, ws: Workspace, kind: DefinitionKind, name: str) -> None:
        """Refuse to delete what another definition still uses."""
        users: list[str] = []
        if kind is OUTPUT:
            users = [r.name for r in self._store.list_definitions(ws.id, ENDPOINT.kind) if r.body["output"] == name]
            what = "export endpoint"
        elif kind is TAG_RULE:
            users = [
                r.name
                for r in self._store.list_definitions(ws.id, OUTPUT.kind)
                if name in (r.body.get("select", {}).get("tags") or {})
            ]
            what = "output"
        elif kind is CLIENT:
            users = self._worker_users(ws, name)
            what = "function"
        if users:
            raise Conflict(
                f"{kind.label} {name!r} is used by {what} {users[0]!r}; change or delete that first",
                code="in_use",
                details={"used_by": users},
            )
