"""Output and export endpoint definitions (SPEC §3.2, §5.1)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from iotman.core.definition_fields import DataPath, DefinitionName, RequiredScope, default_path
from iotman.core.tag_rule import TAG_NAME

__all__ = ["EndpointAuth", "ExportEndpointDefinition", "OutputDefinition", "OutputSelect"]

_ORIGIN = re.compile(r"\*|https?://[A-Za-z0-9.-]+(:\d{1,5})?")


class OutputSelect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[str] | None = Field(default=None, description="Source names; default all.")
    tags: dict[str, str | int | float | bool] | None = Field(
        default=None, description='{tag: value} to match, or {tag: "*"} for "has the tag".'
    )

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key in value or {}:
            if not TAG_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a tag key (letters, digits, '_', '-')")
        return value


class OutputDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DefinitionName
    select: OutputSelect = Field(default_factory=OutputSelect)
    constructor: str | None = Field(default=None, description="Object or array literal; none = the payload.")
    description: str = Field(default="", max_length=2000)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class EndpointAuth(StrEnum):
    OAUTH2 = "oauth2"
    OAUTH2_OR_NONE = "oauth2+none"
    NONE = "none"


class ExportEndpointDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DefinitionName
    output: str = Field(description="The output it serves.")
    path: DataPath = Field(default=None, description="URL segment under /data/{ws}/; default: slug of the name.")
    auth: EndpointAuth = Field(default=EndpointAuth.OAUTH2)
    required_scope: RequiredScope = Field(
        default=None, description="Scope a token must carry; default iotman:data:read for oauth2."
    )
    cors_origins: list[str] = Field(default_factory=list, description='Allowed browser origins, or ["*"].')
    description: str = Field(default="", max_length=2000)

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com or *")
        return value

    def stored(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["path"] = self.path or default_path(self.name)
        return data
