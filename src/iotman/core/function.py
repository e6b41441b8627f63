"""Atomic function and OAuth2 client definitions (SPEC §4.2, §6)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from iotman.core.definition_fields import RequiredScope, UrlName
from iotman.core.scopes import check_scope
from iotman.errors import DefinitionInvalid

__all__ = ["ClientDefinition", "FunctionDefinition"]


class FunctionDefinition(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/functions`` takes."""

    model_config = ConfigDict(extra="forbid")

    name: UrlName = Field(description="Letters, digits, `_`, `-`; the function's URL segment.")
    body: str = Field(
        description="JSONata: the request body is its input (`$` and `$input`); host functions `$require`, "
        "`$fail`. Its value is the answer's `result`."
    )
    worker: str = Field(
        description="The OAuth2 client (with `is_worker`) the body runs as: its scopes bound what the body may do."
    )
    required_scope: RequiredScope = Field(
        default=None, description="Scope a caller needs, besides `iotman:functions:invoke`."
    )
    description: str = Field(default="", max_length=2000)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


class ClientDefinition(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/clients`` takes: an OAuth2 client record.

    Until the OAuth2 flows land (issue 8) a client is its name, its scopes and whether
    it is a worker (functions, triggers and cron jobs run as one)."""

    model_config = ConfigDict(extra="forbid")

    name: UrlName = Field(description="The client id: letters, digits, `_`, `-`.")
    scopes: list[str] = Field(default_factory=list, description="Scopes granted to the client.")
    is_worker: bool = Field(default=False, description="Whether functions may run as this client.")
    description: str = Field(default="", max_length=2000)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)

    @field_validator("scopes")
    @classmethod
    def _check_scopes(cls, value: list[str]) -> list[str]:
        for scope in value:
            try:
                check_scope(scope)
            except DefinitionInvalid as exc:
                raise ValueError(exc.message) from None
        if len(set(value)) != len(value):
            raise ValueError("scopes must not repeat")
        return value
