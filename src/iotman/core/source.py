"""Source definitions (SPEC §2.1): HTTP endpoints that append to the log."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


_PATH = re.compile(r"[a-z0-9_-]{1,64}")
_NAME = re.compile(r"(?!\.+$)[A-Za-z0-9_.-]([A-Za-z0-9 _.-]{0,62}[A-Za-z0-9_.-])?")  # not "." or ".."


def default_path(name: str) -> str:
    """The slug of a name: lowercase, anything else than ``[a-z0-9_-]`` becomes ``-``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-")
    return slug[:64] or "source"


class SourceDefinition(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/sources`` takes and returns."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=False)

    name: str = Field(description="Unique per workspace; letters, digits, spaces, `_`, `.`, `-`.")
    path: str | None = Field(default=None, description="URL path segment under /data/{ws}/; default: slug of the name.")
    auth: SourceAuth = Field(default=SourceAuth.NONE, description="`none` or `oauth2` (bearer token).")
    required_scope: str | None = Field(default=None, description="Scope a bearer token must carry to ingest.")
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

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                "name must be 1 to 64 characters of letters, digits, spaces, '_', '.', '-' (no space at the ends)"
            )
        return value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and not _PATH.fullmatch(value):
            raise ValueError("path must be 1 to 64 characters of a-z, 0-9, '_' and '-'")
        return value

    @field_validator("required_scope")
    @classmethod
    def _check_scope(cls, value: str | None) -> str | None:
        from iotman.core.scopes import SCOPE_PATTERN

        if value is not None and not SCOPE_PATTERN.fullmatch(value):
            raise ValueError("required_scope must look like namespace:action")
        return value

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
