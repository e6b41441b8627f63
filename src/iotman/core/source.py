"""Source definitions (SPEC §2.1): HTTP endpoints that append to the log."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iotman.core.definition_fields import DataPath, DefinitionName, RequiredScope, default_path

__all__ = ["DecodeMode", "ReadAuth", "SchemaMode", "SourceAuth", "SourceDefinition", "default_path"]

MAX_BODY_LIMIT = 64 * 1024 * 1024


class SourceAuth(StrEnum):
    NONE = "none"
    OAUTH2 = "oauth2"


class SchemaMode(StrEnum):
    OFF = "off"
    WARN = "warn"
    REJECT = "reject"


class ReadAuth(StrEnum):
    OAUTH2 = "oauth2"
    OAUTH2_OR_NONE = "oauth2+none"
    NONE = "none"


class DecodeMode(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"
    DEFLATE = "deflate"
    AUTO = "auto"


class SourceDefinition(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/sources`` takes and returns."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=False)

    name: DefinitionName = Field(description="Unique per workspace; letters, digits, spaces, `_`, `.`, `-`.")
    path: DataPath = Field(default=None, description="URL path segment under /data/{ws}/; default: slug of the name.")
    auth: SourceAuth = Field(default=SourceAuth.NONE, description="`none` or `oauth2` (bearer token).")
    required_scope: RequiredScope = Field(default=None, description="Scope a bearer token must carry to ingest.")
    json_schema: dict[str, Any] | bool | None = Field(
        default=None, alias="schema", description="JSON Schema (2020-12) every event must match."
    )
    schema_mode: SchemaMode | None = Field(
        default=None, description="`off`, `warn` (store, note errors) or `reject`; default `reject` with a schema."
    )
    decode: DecodeMode = Field(default=DecodeMode.JSON, description="Body format: json, msgpack, deflate or auto.")
    read_access: bool = Field(default=False, description="Serve GET /data/{ws}/{path} as a passthrough export.")
    read_auth: ReadAuth = Field(
        default=ReadAuth.OAUTH2,
        description="Who may read when read_access is on: `oauth2` (token with iotman:data:read), "
        "`oauth2+none` or `none` (public).",
    )
    max_body_bytes: int | None = Field(
        default=None, ge=1, le=MAX_BODY_LIMIT, description="Body size limit; default: the server setting."
    )
    description: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _fill_defaults(self) -> SourceDefinition:
        if self.path is None:
            self.path = default_path(self.name)
        if self.schema_mode is None:
            self.schema_mode = SchemaMode.OFF if self.json_schema is None else SchemaMode.REJECT
        return self

    @property
    def effective_path(self) -> str:
        assert self.path is not None
        return self.path

    def stored(self) -> dict[str, Any]:
        """The canonical stored form (with defaults filled)."""
        return self.model_dump(mode="json", by_alias=True)
