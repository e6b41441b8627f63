"""Cached lookups of workspaces, sources and tokens (the hot path must not query for them).

Positive results are cached; misses go to the store, so a workspace or token created
by the CLI in another process is found at once. Definition changes made through this
engine invalidate the cache; tokens expire from it after ``token_cache_seconds``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from iotman.access.bearer_tokens import hash_token
from iotman.access.principal import Principal
from iotman.connect.schema_check import SchemaCheck, compile_schema
from iotman.core.source import SourceDefinition
from iotman.core.workspace import Workspace
from iotman.errors import NotFound
from iotman.storage.ports import DefinitionRecord, Store

__all__ = ["CompiledSource", "Registry"]

SOURCE_KIND = "source"


@dataclass(frozen=True, slots=True)
class CompiledSource:
    workspace: Workspace
    definition: SourceDefinition
    schema: SchemaCheck | None
    max_body_bytes: int

    @property
    def path(self) -> str:
        return self.definition.effective_path


class Registry:
    def __init__(self, store: Store, *, default_max_body: int, token_ttl_s: float) -> None:
        self._store = store
        self._default_max_body = default_max_body
        self._token_ttl = token_ttl_s
        self._workspaces: dict[str, Workspace] = {}
        self._sources: dict[tuple[int, str], CompiledSource] = {}
        self._tokens: dict[str, tuple[float, Principal]] = {}
        # bumped on every invalidation: a lookup that raced a definition change does not
        # put its (possibly stale) result into the cache
        self._generation = 0

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
            self.forget_sources(ws)

    # sources ---------------------------------------------------------------------
    def cached_source(self, ws: Workspace, path: str) -> CompiledSource | None:
        return self._sources.get((ws.id, path))

    def source(self, ws: Workspace, path: str) -> CompiledSource:
        found = self._sources.get((ws.id, path))
        if found is None:
            generation = self._generation
            record = self._store.find_definition_by_path(ws.id, SOURCE_KIND, path)
            if record is None:
                raise NotFound(
                    f"no source at /data/{ws.slug}/{path}; create one with POST /api/v1/workspaces/{ws.slug}/sources",
                    code="source_not_found",
                    field="path",
                )
            found = self.compile(ws, record)
            if generation == self._generation:
                self._sources[(ws.id, path)] = found
        return found

    def compile(self, ws: Workspace, record: DefinitionRecord) -> CompiledSource:
        definition = SourceDefinition.model_validate(record.body)
        schema = None if definition.json_schema is None else compile_schema(definition.json_schema)
        limit = definition.max_body_bytes or self._default_max_body
        return CompiledSource(ws, definition, schema, limit)

    def forget_sources(self, ws: Workspace) -> None:
        self._generation += 1
        # list() copies the keys in one step, safe while other threads add entries
        for key in list(self._sources):
            if key[0] == ws.id:
                self._sources.pop(key, None)

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
        principal = Principal("token", record.workspace_id, record.name, record.scopes, record.id)
        if len(self._tokens) > 100_000:
            self._tokens.clear()
        self._tokens[token] = (time.monotonic() + self._token_ttl, principal)
        return principal
