"""Cross-checks of definitions when they are saved or deleted.

Each definition is compiled (queries, constructors, schemas, regular expressions) so
a mistake is a 422 at save time with the field and position, never a failure at
ingest or read time. References between definitions are checked both ways: an
output cannot select an unknown source or tag, and an output still served by an
endpoint cannot be deleted.
"""

from __future__ import annotations

from typing import Any

from iotman.access.principal import Principal
from iotman.compute.jsonata_engine import JsonataEngine
from iotman.compute.jsonata_fields import compile_jsonata_field
from iotman.connect.schema_check import compile_schema
from iotman.core.function import ClientDefinition, FunctionDefinition
from iotman.core.output import EndpointAuth, ExportEndpointDefinition, OutputDefinition
from iotman.core.source import SchemaMode, SourceAuth, SourceDefinition
from iotman.core.tag_rule import TagRuleDefinition
from iotman.core.trigger import TriggerDefinition
from iotman.core.view import BUILT_IN_REDUCERS, ViewDefinition
from iotman.core.workspace import Workspace
from iotman.engine.definition_kinds import (
    CLIENT,
    CRON_JOB,
    ENDPOINT,
    FUNCTION,
    MQTT_PUSH,
    OUTPUT,
    SOURCE,
    TAG_RULE,
    TRIGGER,
    VIEW,
    WEBHOOK,
    DefinitionKind,
)
from iotman.errors import Conflict, DefinitionInvalid, Forbidden
from iotman.process.constructor import compile_constructor
from iotman.process.tag_rules import compile_tag_rule
from iotman.storage.ports import Store

__all__ = ["GRANT_SCOPE", "DefinitionChecks"]

GRANT_SCOPE = "iotman:scopes:grant"
"""Lets a caller hand out workspace-defined (non-``iotman:``) scopes it does not hold itself."""


class DefinitionChecks:
    def __init__(self, store: Store, jsonata: JsonataEngine) -> None:
        self._store = store
        self._jsonata = jsonata

    def _names(self, ws: Workspace, kind: DefinitionKind) -> set[str]:
        return {r.name for r in self._store.list_definitions(ws.id, kind.kind)}

    def check(
        self,
        ws: Workspace,
        kind: DefinitionKind,
        definition: Any,
        stored: dict[str, Any],
        caller: Principal | None = None,
    ) -> None:
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
            self._function(ws, definition, caller)
        elif kind is CLIENT:
            self._client(ws, definition, caller)
        elif kind is TRIGGER:
            self._trigger(ws, definition)
        elif kind in (WEBHOOK, MQTT_PUSH):
            self._pushed(ws, definition)
        elif kind is CRON_JOB and self._store.get_definition(ws.id, FUNCTION.kind, definition.function) is None:
            raise DefinitionInvalid(
                f"function {definition.function!r} does not exist", code="unknown_function", field="function"
            )

    def _pushed(self, ws: Workspace, definition: Any) -> None:
        """A webhook's or MQTT push's output (or export endpoint) exists."""
        if definition.output is not None and definition.output not in self._names(ws, OUTPUT):
            raise DefinitionInvalid(
                f"output {definition.output!r} does not exist", code="unknown_output", field="output"
            )
        if definition.endpoint is not None and definition.endpoint not in self._names(ws, ENDPOINT):
            raise DefinitionInvalid(
                f"export endpoint {definition.endpoint!r} does not exist", code="unknown_endpoint", field="endpoint"
            )

    def _trigger(self, ws: Workspace, definition: TriggerDefinition) -> None:
        compile_jsonata_field(self._jsonata, definition.condition, "condition")
        self._unknown_sources(ws, [definition.source], "source")
        if definition.reply_to is not None:
            self._unknown_sources(ws, [definition.reply_to], "reply_to")
        if self._store.get_definition(ws.id, FUNCTION.kind, definition.function) is None:
            raise DefinitionInvalid(
                f"function {definition.function!r} does not exist", code="unknown_function", field="function"
            )

    @staticmethod
    def _grantable(caller: Principal | None, scopes: list[str], field: str, what: str) -> None:
        """Nobody hands out scopes they do not hold (a function runs with its worker's)."""
        if caller is None or caller.server_admin:
            return
        # iotman: scopes only by who holds them; workspace-defined ones also by iotman:scopes:grant
        may_grant_own = caller.has_scope(GRANT_SCOPE)
        missing = [
            scope
            for scope in scopes
            if not caller.has_scope(scope) and (scope.startswith("iotman:") or not may_grant_own)
        ]
        if missing:
            raise Forbidden(
                f"{what} would grant scope {missing[0]!r}, which the caller does not hold",
                code="scope_escalation",
                field=field,
                details={"missing_scopes": missing},
            )

    def _function(self, ws: Workspace, definition: FunctionDefinition, caller: Principal | None) -> None:
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
        self._grantable(caller, list(worker.body.get("scopes") or []), "worker", f"running as {definition.worker!r}")

    def _client(self, ws: Workspace, definition: ClientDefinition, caller: Principal | None) -> None:
        self._grantable(caller, definition.scopes, "scopes", f"client {definition.name!r}")
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
        if kind in (OUTPUT, ENDPOINT):
            field = "output" if kind is OUTPUT else "endpoint"
            what = "webhook"
            users = [r.name for r in self._store.list_definitions(ws.id, WEBHOOK.kind) if r.body.get(field) == name]
            if not users:
                what = "MQTT push"
                users = [
                    r.name for r in self._store.list_definitions(ws.id, MQTT_PUSH.kind) if r.body.get(field) == name
                ]
            if not users and kind is OUTPUT:
                what = "export endpoint"
                users = [r.name for r in self._store.list_definitions(ws.id, ENDPOINT.kind) if r.body["output"] == name]
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
        elif kind in (FUNCTION, SOURCE):
            field = "function" if kind is FUNCTION else "source"
            users = [
                r.name
                for r in self._store.list_definitions(ws.id, TRIGGER.kind)
                if r.body.get(field) == name or (kind is SOURCE and r.body.get("reply_to") == name)
            ]
            what = "trigger"
            if not users and kind is FUNCTION:
                users = [
                    r.name for r in self._store.list_definitions(ws.id, CRON_JOB.kind) if r.body["function"] == name
                ]
                what = "cron job"
        if users:
            raise Conflict(
                f"{kind.label} {name!r} is used by {what} {users[0]!r}; change or delete that first",
                code="in_use",
                details={"used_by": users},
            )
