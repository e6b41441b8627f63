"""View definitions (SPEC §4.1): per-key state folded from the log on every write."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["BUILT_IN_REDUCERS", "VIEW_NAME", "ViewDefinition"]

VIEW_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
BUILT_IN_REDUCERS = frozenset({"last", "count", "first"})


class ViewDefinition(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/views`` takes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Letters, digits, `_`, `-`; the view's URL segment.")
    sources: list[str] | None = Field(default=None, description="Source names it folds; default all.")
    key: str = Field(
        description="JSONata over `{payload, metadata, received_at, tags, source, id, seq}`: the row's key. "
        "Null, missing or not a scalar skips the event."
    )
    reducer: str = Field(
        description="`last` (the latest payload), `count`, `first` (the first payload), or JSONata over "
        "`{prev, event}` giving the new value (undefined leaves the row unchanged)."
    )
    init: str | None = Field(default=None, description="JSONata (no input): `prev` for a new key; default null.")
    scope_field: str | None = Field(
        default=None, description="JSONata over the row value giving its owner's `sub` (end-user reads)."
    )
    required_scope: str | None = Field(default=None, description="Scope needed to read the view's rows.")
    description: str = Field(default="", max_length=2000)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not VIEW_NAME.fullmatch(value):
            raise ValueError("name must be 1 to 64 characters of letters, digits, '_' and '-'")
        return value
