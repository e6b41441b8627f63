"""View definitions (SPEC §4.1): per-key state folded from the log on every write."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iotman.core.definition_fields import URL_NAME, UrlName

__all__ = ["BUILT_IN_REDUCERS", "VIEW_NAME", "ViewDefinition"]

VIEW_NAME = URL_NAME
BUILT_IN_REDUCERS = frozenset({"last", "count", "first"})


class ViewDefinition(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/views`` takes."""

    model_config = ConfigDict(extra="forbid")

    name: UrlName = Field(description="Letters, digits, `_`, `-`; the view's URL segment.")
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
