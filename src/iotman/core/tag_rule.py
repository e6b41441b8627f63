"""Tag rule definitions (SPEC §3.1): label events at ingest with JSONPath."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ALLOWED", "NEEDS", "TAG_NAME", "TagMethod", "TagRuleDefinition"]

TAG_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class TagMethod(StrEnum):
    VALUE = "value"
    EXISTS = "exists"
    REGEX = "regex"
    SOURCE = "source"
    CONSTANT = "constant"


NEEDS: dict[TagMethod, tuple[str, ...]] = {
    TagMethod.VALUE: ("path",),
    TagMethod.EXISTS: ("path",),
    TagMethod.REGEX: ("path", "pattern"),
    TagMethod.SOURCE: (),
    TagMethod.CONSTANT: ("value",),
}
ALLOWED: dict[TagMethod, frozenset[str]] = {
    TagMethod.VALUE: frozenset({"path"}),
    TagMethod.EXISTS: frozenset({"path"}),
    TagMethod.REGEX: frozenset({"path", "pattern"}),
    TagMethod.SOURCE: frozenset(),
    TagMethod.CONSTANT: frozenset({"value", "filter"}),
}


class TagRuleDefinition(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/tag-rules`` takes. ``name`` is the tag key."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The tag key: letters, digits, `_`, `-`.")
    sources: list[str] | None = Field(default=None, description="Source names it applies to; default all.")
    method: TagMethod = Field(description="value, exists, regex, source or constant.")
    path: str | None = Field(default=None, description="JSONPath; `$.x` means `$.payload.x`.")
    pattern: str | None = Field(default=None, description="Regular expression (RE2 syntax) for `regex`.")
    value: Any = Field(default=None, description="The literal tag value for `constant` (a string, number or boolean).")
    filter: str | None = Field(default=None, description="JSONPath filter query for `constant`.")
    description: str = Field(default="", max_length=2000)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not TAG_NAME.fullmatch(value):
            raise ValueError("name (the tag key) must be 1 to 64 characters of letters, digits, '_' and '-'")
        return value

    @field_validator("value")
    @classmethod
    def _check_value(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError("a tag value is a string, number or boolean")
        return value

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)
